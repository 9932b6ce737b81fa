"""A cross-encoder reranker, the optional last stage of hybrid search, served by text-embeddings-inference.

A cross-encoder reads the question and a passage together, so it tells apart neighbours that a bi-encoder's vectors
cannot (a class's own description from its inherited methods). No such model ships offline here, and one is too slow
on two CPU cores for a question's ~20 candidates, so Parley does not run one itself: point `RERANK_URL` at a TEI
server started with a reranker model (`--model-id BAAI/bge-reranker-base`, say) and `chunk_search` sends it the
best `RERANK_CANDIDATES` passages of the first stages, then orders them by its scores.

A reranker that fails or is slow never fails a search: the first stages' order is kept, and after a failure the
reranker is left alone for `RERANK_COOLDOWN_S`, so a server that is down costs one timeout, not one per question.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from knowledge.tei import TEIClient, TEIError

logger = logging.getLogger(__name__)


class RerankError(Exception):
    """The reranker could not score the passages."""


class TEIReranker:
    def __init__(self, *, base_url: str, timeout_s: float, cooldown_s: float) -> None:
        self._client = TEIClient(base_url=base_url, timeout_s=timeout_s)
        self.base_url = self._client.base_url
        self._cooldown_s = cooldown_s
        self._resting_until = 0.0
        self._lock = threading.Lock()

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, in the order given (higher is more relevant)."""
        if not texts:
            return []
        try:
            return self._client.rerank(query, texts)
        except TEIError as error:
            raise RerankError(f"reranker: {error}") from error

    def scores_or_none(self, query: str, texts: list[str]) -> list[float] | None:
        """`scores`, or None (logged) when the reranker fails or is resting after a failure."""
        with self._lock:
            if time.monotonic() < self._resting_until:
                return None
        try:
            return self.scores(query, texts)
        except RerankError as error:
            with self._lock:
                self._resting_until = time.monotonic() + self._cooldown_s
            logger.warning("%s; searching without it for %.0f s", error, self._cooldown_s)
            return None


_rerankers: dict[str, TEIReranker] = {}
_rerankers_lock = threading.Lock()


def get_reranker() -> TEIReranker | None:
    """The configured reranker (one per process and URL), or None when `RERANK_URL` is empty."""
    url = settings.RERANK_URL
    if not url:
        return None
    with _rerankers_lock:
        reranker = _rerankers.get(url)
        if reranker is None:
            reranker = _rerankers[url] = TEIReranker(
                base_url=url, timeout_s=settings.RERANK_TIMEOUT_S, cooldown_s=settings.RERANK_COOLDOWN_S
            )
        return reranker
