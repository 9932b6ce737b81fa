"""Hybrid retrieval: pgvector nearest neighbours and PostgreSQL full-text search, fused by reciprocal rank.

Both halves run on the chunk table filtered to one knowledge base. Small knowledge bases (the common case) are
searched exactly, which is both fast and perfect; large ones go through the HNSW index with pgvector 0.8's
iterative scan and a generous `hnsw.ef_search`, so a filter that keeps only one bot's rows among many does not
starve the scan of candidates.
"""

import re
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from knowledge.embeddings import get_embedder
from knowledge.models import SEARCH_CONFIG, Chunk

# Reciprocal rank fusion constant: a hit at rank r in one list adds 1 / (RRF_K + r).
RRF_K = 60
# Candidates taken from each half before fusion.
CANDIDATES = 40
# Up to this many chunks in a knowledge base, vector search is exact (a scan of that knowledge base's rows).
EXACT_SEARCH_MAX_CHUNKS = 20_000
HNSW_EF_SEARCH = 200
# Cosine similarity (all-MiniLM-L6-v2) under which a passage is not about the question at all.
MIN_RELEVANCE = 0.30

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class RetrievedChunk:
    chunk_id: int
    document_id: int
    text: str
    heading_path: list[str]
    title: str
    url: str
    score: float
    similarity: float | None
    vector_rank: int | None
    text_rank: int | None


@dataclass(frozen=True)
class SearchResult:
    chunks: list[RetrievedChunk]
    relevant: bool
    embed_ms: float
    search_ms: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def relevant_chunks(self) -> list[RetrievedChunk]:
        return [chunk for chunk in self.chunks if chunk.similarity is not None and chunk.similarity >= MIN_RELEVANCE]


def fulltext_query(question: str) -> str:
    """A `websearch_to_tsquery` input matching any of the question's words: a question is phrased in words the
    passage rarely repeats all of, and ranking (ts_rank_cd) rewards the passages that share the most."""
    return " or ".join(_WORD.findall(question)[:64])


def chunk_search(
    *,
    knowledge_base_id: int,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = CANDIDATES,
    exact: bool | None = None,
) -> SearchResult:
    """The `k` chunks of a knowledge base that best answer `query`; `mode` is hybrid, vector or text."""
    if mode not in {"hybrid", "vector", "text"}:
        raise ValueError(f"unknown search mode {mode!r}")
    started = time.perf_counter()
    embedding = get_embedder(settings.EMBEDDING_URL or None).embed_query(query) if mode != "text" else None
    embedded = time.perf_counter()

    with transaction.atomic(), connection.cursor() as cursor:
        vector_hits: list[tuple[int, float]] = []
        text_hits: list[int] = []
        if embedding is not None:
            if exact is None:
                exact = _chunk_count(cursor, knowledge_base_id) <= EXACT_SEARCH_MAX_CHUNKS
            vector_hits = _vector_search(
                cursor, knowledge_base_id=knowledge_base_id, embedding=embedding, limit=candidates, exact=exact
            )
        if mode != "vector":
            text_hits = _text_search(cursor, knowledge_base_id=knowledge_base_id, query=query, limit=candidates)

    scores: dict[int, float] = {}
    for rank, (chunk_id, _) in enumerate(vector_hits, start=1):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    for rank, chunk_id in enumerate(text_hits, start=1):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    top_ids = sorted(scores, key=lambda chunk_id: -scores[chunk_id])[:k]

    similarity = {chunk_id: 1.0 - distance for chunk_id, distance in vector_hits}
    vector_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(vector_hits, start=1)}
    text_rank = {chunk_id: rank for rank, chunk_id in enumerate(text_hits, start=1)}
    if embedding is not None:
        _fill_missing_similarity(similarity, top_ids, embedding)
    rows = (
        Chunk.objects.filter(id__in=top_ids)
        .select_related("document")
        .only("id", "text", "heading_path", "document__id", "document__title", "document__url", "document__filename")
    )
    by_id = {row.id: row for row in rows}
    chunks = [
        RetrievedChunk(
            chunk_id=chunk_id,
            document_id=by_id[chunk_id].document.id,
            text=by_id[chunk_id].text,
            heading_path=list(by_id[chunk_id].heading_path),
            title=by_id[chunk_id].document.title or by_id[chunk_id].document.filename,
            url=by_id[chunk_id].document.url,
            score=scores[chunk_id],
            similarity=similarity.get(chunk_id),
            vector_rank=vector_rank.get(chunk_id),
            text_rank=text_rank.get(chunk_id),
        )
        for chunk_id in top_ids
        if chunk_id in by_id
    ]
    finished = time.perf_counter()
    relevant = any(chunk.similarity is not None and chunk.similarity >= MIN_RELEVANCE for chunk in chunks)
    if embedding is None:
        relevant = bool(chunks)
    return SearchResult(
        chunks=chunks,
        relevant=relevant,
        embed_ms=(embedded - started) * 1000,
        search_ms=(finished - embedded) * 1000,
    )


def _chunk_count(cursor, knowledge_base_id: int) -> int:
    # Bounded count: we only need to know whether it is over the exact-search limit.
    cursor.execute(
        "SELECT count(*) FROM (SELECT 1 FROM knowledge_chunk WHERE knowledge_base_id = %s LIMIT %s) AS bounded",
        [knowledge_base_id, EXACT_SEARCH_MAX_CHUNKS + 1],
    )
    return cursor.fetchone()[0]


def _vector_literal(embedding: list[float]) -> str:
    return "[" + ",".join(f"{value:.7g}" for value in embedding) + "]"


def _vector_search(cursor, *, knowledge_base_id: int, embedding: list[float], limit: int, exact: bool):
    vector = _vector_literal(embedding)
    if exact:
        # A materialised subset cannot use the HNSW index: an exact scan of this knowledge base's rows only.
        cursor.execute(
            "WITH subset AS MATERIALIZED ("
            "  SELECT id, embedding FROM knowledge_chunk WHERE knowledge_base_id = %s"
            ") SELECT id, embedding <=> %s::vector AS distance FROM subset ORDER BY distance LIMIT %s",
            [knowledge_base_id, vector, limit],
        )
    else:
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(HNSW_EF_SEARCH, limit)])
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            "SELECT id, distance FROM ("
            "  SELECT id, embedding <=> %s::vector AS distance FROM knowledge_chunk"
            "  WHERE knowledge_base_id = %s ORDER BY embedding <=> %s::vector LIMIT %s"
            ") AS nearest ORDER BY distance",
            [vector, knowledge_base_id, vector, limit],
        )
    return [(row[0], float(row[1])) for row in cursor.fetchall()]


def _text_search(cursor, *, knowledge_base_id: int, query: str, limit: int) -> list[int]:
    terms = fulltext_query(query)
    if not terms:
        return []
    cursor.execute(
        "SELECT id FROM knowledge_chunk, websearch_to_tsquery(%s, %s) AS query "
        "WHERE knowledge_base_id = %s AND search_vector @@ query "
        "ORDER BY ts_rank_cd(search_vector, query, 32) DESC, id LIMIT %s",
        [SEARCH_CONFIG, terms, knowledge_base_id, limit],
    )
    return [row[0] for row in cursor.fetchall()]


def _fill_missing_similarity(similarity: dict[int, float], chunk_ids: list[int], embedding: list[float]) -> None:
    """Full-text-only hits have no similarity yet; the relevance threshold needs one for every returned chunk."""
    missing = [chunk_id for chunk_id in chunk_ids if chunk_id not in similarity]
    if not missing:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, embedding <=> %s::vector FROM knowledge_chunk WHERE id = ANY(%s)",
            [_vector_literal(embedding), missing],
        )
        for chunk_id, distance in cursor.fetchall():
            similarity[chunk_id] = 1.0 - float(distance)
