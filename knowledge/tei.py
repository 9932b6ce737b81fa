"""The one client for text-embeddings-inference (TEI) servers, for both things Parley asks of them: embeddings
(`POST /embed`) and reranking (`POST /rerank`), plus the server's `/info`. Plain HTTP with explicit timeouts;
every failure is a `TEIError` saying which server and why.

TEI's routes: POST /embed {"inputs": [str], "normalize": bool, "truncate": bool} answers [[float]];
POST /rerank {"query": str, "texts": [str], "truncate": bool, "raw_scores": bool} answers
[{"index": int, "score": float}, ...] (sorted by score; 424 when the model is not a reranker); GET /info answers
{"model_id": str, "max_input_length": int, ...}.
"""

from __future__ import annotations

import httpx


class TEIError(Exception):
    """The TEI server could not be reached, failed, or answered something unreadable."""


class TEIClient:
    def __init__(self, *, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def _post(self, path: str, payload: dict) -> object:
        try:
            response = self._client.post(path, json=payload)
        except httpx.HTTPError as error:
            raise TEIError(f"{self.base_url} could not be reached: {error}") from error
        if response.status_code != 200:
            raise TEIError(f"{self.base_url} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError as error:
            raise TEIError(f"{self.base_url} sent an unreadable answer: {response.text[:200]}") from error

    def info(self) -> dict[str, object]:
        """The server's /info (model id, input limit); raises TEIError when it has none."""
        try:
            response = self._client.get("/info")
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise TEIError(f"{self.base_url}/info: {error}") from error
        return info if isinstance(info, dict) else {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit vectors, one per text, in order. An over-long text is cut by the server rather than failing the
        whole batch."""
        vectors = self._post("/embed", {"inputs": texts, "normalize": True, "truncate": True})
        if (
            not isinstance(vectors, list)
            or len(vectors) != len(texts)
            or not all(isinstance(vector, list) and vector for vector in vectors)
        ):
            raise TEIError(
                f"{self.base_url} did not return one vector per text for {len(texts)} texts; "
                "is it a TEI embedding model (not a reranker)?"
            )
        return [[float(x) for x in vector] for vector in vectors]

    def rerank(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text, in the order given (higher is more relevant)."""
        ranked = self._post("/rerank", {"query": query, "texts": texts, "truncate": True, "raw_scores": False})
        try:
            by_index = {int(item["index"]): float(item["score"]) for item in ranked}
        except (TypeError, KeyError, ValueError) as error:
            raise TEIError(f"{self.base_url} sent an unreadable answer: {str(ranked)[:200]}") from error
        if sorted(by_index) != list(range(len(texts))):
            raise TEIError(f"{self.base_url} scored {len(by_index)} of {len(texts)} passages")
        return [by_index[index] for index in range(len(texts))]
