"""Hybrid retrieval: pgvector nearest neighbours and a BM25 ranking on PostgreSQL full-text search, fused by score.

Both halves run on the chunk table filtered to one knowledge base, then one small query scores every candidate of
either half by cosine similarity, and the fused ranking is the similarity plus a weighted, normalised BM25 score.
In hybrid mode a second stage adds a late-interaction score (knowledge/late_interaction.py): the question's token
embeddings against each candidate's stored token signature. Chunks with identical text (documentation repeats
itself) are returned once.

- Vector half: small knowledge bases (the common case) are searched exactly, which is fast and perfect; large ones
  go through the HNSW index with pgvector 0.8's iterative scan and a generous `hnsw.ef_search`, so a filter that
  keeps only one bot's rows among many does not starve the scan of candidates.
- Text half (knowledge/full_text.py): BM25 on PostgreSQL full-text search, the question's lexemes weighted by their
  document frequencies in the knowledge base.

Weights were tuned on tests/fixtures/eval (see docs/retrieval.md); rank fusion (RRF) was measured and was worse.
"""

import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection

from knowledge.embeddings import get_embedder
from knowledge.full_text import text_search
from knowledge.late_interaction import late_interaction_scores
from knowledge.nearest import (
    NEAREST,
    hits_by_branch,
    nearest_each_prepared,
    nearest_first,
    vector_literal,
    vector_search_finish,
    vector_search_in_documents,
    vector_search_prepared,
)
from knowledge.reranking import get_reranker

logger = logging.getLogger(__name__)

# Candidates taken from each half before fusion.
CANDIDATES = 40
# Fused score: cosine similarity + TEXT_WEIGHT * BM25 / (the best BM25 among the candidates).
TEXT_WEIGHT = 0.15
# Hybrid search adds LATE_INTERACTION_WEIGHT * the late-interaction score (knowledge/late_interaction.py), a
# second stage over the candidates of both halves. Tuned on tests/fixtures/eval: 0.5 to 1.5 measured alike.
LATE_INTERACTION_WEIGHT = 1.0
# Vector search is exact (a scan of the knowledge base's rows) up to EXACT_SEARCH_ALWAYS_CHUNKS chunks, a few ms.
# Past that, exact search costs the database about 1.4 ms of CPU per 1,000 chunks per question: 30 ms at 10,000,
# which made the database's CPU the bottleneck at 50 questions at once (bench/). So a knowledge base holding at
# least HNSW_MIN_SHARE of all chunks goes through the HNSW index (the filter keeps enough of what the index walks:
# recall@10 0.99 at ef_search 200 for a half share, docs/retrieval.md); a small share of a big table stays exact
# up to EXACT_SEARCH_MAX_CHUNKS, because filtered HNSW lost recall there (0.84 at 1% of 100k).
EXACT_SEARCH_ALWAYS_CHUNKS = 2_000
EXACT_SEARCH_MAX_CHUNKS = 20_000
HNSW_MIN_SHARE = 0.25
HNSW_EF_SEARCH = 200
# A knowledge base of more than HNSW_LARGE_KB_CHUNKS walks more of the graph: with 510,000 chunks of a 1M-chunk table,
# recall@10 against exact search was 0.89-0.91 at ef_search 200 and 0.96-0.97 at 400 (bench/retrieval_scale.py, two
# runs).
HNSW_LARGE_KB_CHUNKS = 200_000
HNSW_EF_SEARCH_LARGE = 400
# Cosine similarity (all-MiniLM-L6-v2) under which a passage is not about the question at all.
MIN_RELEVANCE = 0.30


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
    # The cross-encoder's score when a reranker is configured and answered (knowledge/reranking.py).
    rerank_score: float | None = None
    # Word pieces of `text` in the embedding tokenizer (a prompt's cost is estimated from it).
    token_count: int | None = None
    # Cosine similarity to the caller's `topic_embedding` (chunk_search), when it gave one.
    topic_similarity: float | None = None


@dataclass(frozen=True)
class SearchResult:
    chunks: list[RetrievedChunk]
    relevant: bool
    embed_ms: float
    search_ms: float
    timings: dict[str, float] = field(default_factory=dict)
    # Which search ran for a question in a conversation (knowledge.conversation): "none" when there was no history.
    context: str = "none"

    @property
    def relevant_chunks(self) -> list[RetrievedChunk]:
        return [chunk for chunk in self.chunks if chunk.similarity is not None and chunk.similarity >= MIN_RELEVANCE]


def chunk_search(
    *,
    knowledge_base_id: int,
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = CANDIDATES,
    exact: bool | None = None,
    embedding: list[float] | None = None,
    query_tokens: np.ndarray | None = None,
    embedding_soon: Future | None = None,
    text_query: str | None = None,
    focus_documents: Mapping[int, float] | None = None,
    vector_hits: list[tuple[int, float]] | None = None,
    search_config: str | None = None,
    text_hits: list[tuple[int, float]] | None = None,
    topic_embedding: list[float] | None = None,
) -> SearchResult:
    """The `k` chunks of a knowledge base that best answer `query`; `mode` is hybrid, vector or text.
    Pass `embedding` (and `query_tokens`) when the query is already embedded, or `embedding_soon` (a Future of its
    `QueryEmbedding`, `Embedder.embed_query_soon`) when its embedding is under way: the full-text half runs while
    the embedding finishes. Without either, the embedding is started here, and overlaps the full-text half too.
    `search_ms` is database time and fusion, `embed_ms` the time spent waiting for the query's embedding.

    `text_query` replaces `query` for the full-text half (a conversation searches the words of its recent turns).
    `focus_documents` maps document ids to a bonus added to their chunks' scores; their nearest chunks join the
    candidates (knowledge.conversation: the documents an earlier answer came from). `vector_hits`, the vector half
    the caller already ran for `embedding` (`vector_neighbours` with `candidates`), is used instead of running it
    again; `search_config` is then the knowledge base's text-search configuration the caller read with it.
    `text_hits`, the full-text half the caller already ran (`text_search` with `candidates`), likewise.
    `topic_embedding`, a second vector, is compared with every candidate in the same statement: each chunk's
    `topic_similarity`."""
    if mode not in {"hybrid", "vector", "text"}:
        raise ValueError(f"unknown search mode {mode!r}")
    started = time.perf_counter()
    if mode == "text":
        embedding, embedding_soon = None, None
    elif embedding is None and embedding_soon is None:
        embedding_soon = get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(query)
    embed_seconds = 0.0
    timings: dict[str, float] = {}

    nested = connection.in_atomic_block
    # The planner's settings of the vector half in force until put back (`vector_search_prepared`): None, or
    # whether they are an exact search's.
    planner_changed: bool | None = None
    described: _Candidates | None = None
    # No transaction of its own (each BEGIN and COMMIT a round trip): the search only reads, each statement in
    # PostgreSQL's own transaction. The planner's settings go in one string with the vector half's statement, one
    # implicit transaction, and end with it; inside a caller's transaction they are put back before it goes on.
    with connection.cursor() as cursor:
        plan = vector_search_plan(cursor, knowledge_base_id) if mode != "text" and vector_hits is None else None
        # The full-text half first: it needs no vector, so it runs while the question's embedding finishes.
        if mode == "vector":
            text_hits = []
        elif text_hits is None:
            text_started = time.perf_counter()
            text_hits = text_search(
                cursor,
                knowledge_base_id=knowledge_base_id,
                query=query if text_query is None else text_query,
                limit=candidates,
                search_config=plan.search_config if plan else search_config,
            )
            timings["text_ms"] = (time.perf_counter() - text_started) * 1000
        if mode == "text":
            vector, vector_hits = None, []
        else:
            # The planner's settings go with the vector half's statement after the embedding: one round trip.
            if vector_hits is None:
                planner_changed = plan.exact if exact is None else exact
            if embedding is None:
                waited = time.perf_counter()
                embedded_query = query_embedding_result(embedding_soon, query)
                embedding, query_tokens = embedded_query.vector, embedded_query.tokens
                embed_seconds = time.perf_counter() - waited
            vector_started = time.perf_counter()
            # Written once: the statements below each send it (its 384 numbers as text).
            vector = vector_literal(embedding)
            if vector_hits is None and not focus_documents and topic_embedding is None:
                # A first question: its nearest chunks and the description of every candidate, in one statement.
                described = _nearest_described(
                    cursor,
                    knowledge_base_id=knowledge_base_id,
                    vector=vector,
                    limit=candidates,
                    text_hit_ids=[chunk_id for chunk_id, _ in text_hits],
                    signatures=mode == "hybrid",
                    exact=planner_changed,
                    ef_search=plan.ef_search,
                )
                vector_hits = described.nearest
            else:
                if vector_hits is None:
                    rows = nearest_each_prepared(
                        cursor,
                        knowledge_base_id=knowledge_base_id,
                        vectors=[vector],
                        limit=candidates,
                        exact=planner_changed,
                        ef_search=plan.ef_search,
                    )
                    [vector_hits] = hits_by_branch(rows, 1)
                    # What follows reads a few documents' rows and rows by id: planned as usual.
                    if nested:
                        vector_search_finish(cursor, exact=planner_changed)
                    planner_changed = None
                vector_hits = list(vector_hits)
                if focus_documents:
                    vector_hits += vector_search_in_documents(
                        cursor,
                        knowledge_base_id=knowledge_base_id,
                        document_ids=list(focus_documents),
                        vector=vector,
                        limit=candidates,
                    )
            timings["vector_ms"] = (time.perf_counter() - vector_started) * 1000
        candidate_ids = list(dict.fromkeys([chunk_id for chunk_id, _ in vector_hits + text_hits]))
        if described is None:
            described = _candidates_describe(
                cursor,
                chunk_ids=candidate_ids,
                vector=vector,
                signatures=mode == "hybrid",
                topic=vector_literal(topic_embedding) if topic_embedding is not None else None,
            )
        similarity, passages, topic_similarity = described.similarity, described.passages, described.topic_similarity
        if nested and planner_changed is not None:
            # Inside a caller's transaction: its next statements are planned as it expects.
            vector_search_finish(cursor, exact=planner_changed)

    late, token_embed_seconds = _late_interaction(
        query=query, query_tokens=query_tokens, signatures=described.signatures
    )
    bm25 = dict(text_hits)
    best_bm25 = max(bm25.values(), default=0.0) or 1.0
    if mode == "text":
        scores = {chunk_id: bm25[chunk_id] for chunk_id in candidate_ids}
    else:
        text_weight = TEXT_WEIGHT if mode == "hybrid" else 0.0
        scores = {
            chunk_id: similarity.get(chunk_id, 0.0)
            + text_weight * bm25.get(chunk_id, 0.0) / best_bm25
            + LATE_INTERACTION_WEIGHT * late.get(chunk_id, 0.0)
            for chunk_id in candidate_ids
        }
    if focus_documents:
        scores = {
            chunk_id: score + focus_documents.get(passages[chunk_id].document_id if chunk_id in passages else None, 0.0)
            for chunk_id, score in scores.items()
        }
    reranker = get_reranker() if mode == "hybrid" else None
    wanted = max(k, settings.RERANK_CANDIDATES) if reranker is not None else k
    top_ids: list[int] = []
    seen_texts: set[str] = set()
    for chunk_id in sorted(candidate_ids, key=lambda chunk_id: (-scores[chunk_id], chunk_id)):
        passage = passages.get(chunk_id)
        if passage is None:  # deleted since the candidate was found
            continue
        if passage.text in seen_texts:
            continue
        seen_texts.add(passage.text)
        top_ids.append(chunk_id)
        if len(top_ids) == wanted:
            break

    vector_rank = {}
    for rank, (chunk_id, _) in enumerate(vector_hits, start=1):
        vector_rank.setdefault(chunk_id, rank)
    text_rank = {chunk_id: rank for rank, (chunk_id, _) in enumerate(text_hits, start=1)}
    rerank_scores: dict[int, float] = {}
    if reranker is not None and top_ids:
        reranked = time.perf_counter()
        # The passage as the answer cites it: where it sits, then its text.
        cited = [
            " › ".join([passages[chunk_id].title, *passages[chunk_id].heading_path]) + "\n\n" + passages[chunk_id].text
            for chunk_id in top_ids
        ]
        answered = reranker.scores_or_none(query, cited)
        timings["rerank_ms"] = (time.perf_counter() - reranked) * 1000
        if answered is not None:
            rerank_scores = dict(zip(top_ids, answered, strict=True))
            top_ids = sorted(top_ids, key=lambda chunk_id: -rerank_scores[chunk_id])
    top_ids = top_ids[:k]
    chunks = [
        RetrievedChunk(
            chunk_id=chunk_id,
            document_id=passages[chunk_id].document_id,
            text=passages[chunk_id].text,
            heading_path=list(passages[chunk_id].heading_path),
            title=passages[chunk_id].title,
            url=passages[chunk_id].url,
            score=scores[chunk_id],
            similarity=similarity.get(chunk_id),
            vector_rank=vector_rank.get(chunk_id),
            text_rank=text_rank.get(chunk_id),
            rerank_score=rerank_scores.get(chunk_id),
            token_count=passages[chunk_id].token_count,
            topic_similarity=topic_similarity.get(chunk_id),
        )
        for chunk_id in top_ids
    ]
    finished = time.perf_counter()
    relevant = any(chunk.similarity is not None and chunk.similarity >= MIN_RELEVANCE for chunk in chunks)
    if embedding is None:
        relevant = bool(chunks)
    if late:
        timings["query_tokens_ms"] = token_embed_seconds * 1000
    return SearchResult(
        chunks=chunks,
        relevant=relevant,
        embed_ms=(embed_seconds + token_embed_seconds) * 1000,
        search_ms=(finished - started - embed_seconds - token_embed_seconds) * 1000,
        timings=timings,
    )


def query_embedding_result(embedding_soon: Future, query: str):
    """The query's `QueryEmbedding` from the computation under way (`Embedder.embed_query_soon`), computed again
    if that one failed: the embedding started before the search may have met a passing failure."""
    try:
        return embedding_soon.result()
    except Exception:
        logger.warning("the question's embedding failed; computing it again", exc_info=True)
        return get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(query).result()


@dataclass(frozen=True)
class VectorNeighbours:
    # For each vector searched, (chunk id, cosine distance) of its nearest chunks, nearest first.
    hits: list[list[tuple[int, float]]]
    # The knowledge base's text-search configuration, read with the plan (chunk_search's `search_config`).
    search_config: str | None
    # Of every hit, the chunk nearest to `compared` as (chunk id, cosine distance to it); None without hits.
    compared_nearest: tuple[int, float] | None = None


def vector_neighbours(
    *,
    knowledge_base_id: int,
    embeddings: list[list[float]],
    limit: int = CANDIDATES,
    plan: "VectorSearchPlan | None" = None,
    compared: list[float] | None = None,
) -> VectorNeighbours:
    """For each vector, the knowledge base's `limit` nearest chunks as (chunk id, cosine distance), nearest first,
    through the plan search uses (`plan`, when the caller read it already): what `chunk_search` takes as
    `vector_hits` (and `search_config`). `compared`, one more vector, is measured against every hit as it is read:
    `compared_nearest` is the hit nearest to it, without the walk of the graph its own neighbours would take
    (conversation_search's decision). One round trip: the planner's settings and every vector.

    Ask for as many as search does even when only the nearest matters: with `LIMIT 1` the planner walked the
    knowledge base's rows through its id index and sorted them all (44-54 ms at 10,000 chunks, against 10 ms
    through HNSW)."""
    nested = connection.in_atomic_block
    vectors = [vector_literal(embedding) for embedding in embeddings]
    with connection.cursor() as cursor:  # no transaction of its own: as chunk_search's
        plan = plan or vector_search_plan(cursor, knowledge_base_id)
        rows = nearest_each_prepared(
            cursor,
            knowledge_base_id=knowledge_base_id,
            vectors=vectors,
            limit=limit,
            exact=plan.exact,
            ef_search=plan.ef_search,
            compared=None if compared is None else vector_literal(compared),
        )
        if nested:
            vector_search_finish(cursor, exact=plan.exact)
    compared_nearest = None
    if compared is not None:
        compared_nearest = min(((row[1], float(row[3])) for row in rows), key=nearest_first, default=None)
    return VectorNeighbours(
        hits=hits_by_branch(rows, len(vectors)), search_config=plan.search_config, compared_nearest=compared_nearest
    )


@dataclass(frozen=True)
class VectorSearchPlan:
    exact: bool
    ef_search: int
    # The knowledge base's text-search configuration, read in the same statement for the text half (None: absent).
    search_config: str | None = None


def vector_search_plan(cursor, knowledge_base_id: int) -> VectorSearchPlan:
    """How the vector half searches this knowledge base: exactly or through HNSW, and how far the walk goes."""
    # The knowledge base's count is the totals row of its term statistics (one index lookup, exact); the table's
    # is the planner's estimate, plenty for a share.
    cursor.execute(
        "SELECT (SELECT chunks FROM knowledge_term WHERE knowledge_base_id = %s AND lexeme = ''),"
        " (SELECT reltuples FROM pg_class WHERE oid = 'knowledge_chunk'::regclass),"
        " (SELECT search_config::text FROM knowledge_knowledgebase WHERE id = %s)",
        [knowledge_base_id, knowledge_base_id],
    )
    chunks, table_chunks, search_config = cursor.fetchone()
    chunks = chunks or 0
    if chunks <= EXACT_SEARCH_ALWAYS_CHUNKS:
        exact = True
    elif chunks > EXACT_SEARCH_MAX_CHUNKS:
        exact = False
    else:
        exact = chunks / max(table_chunks or 0, chunks) < HNSW_MIN_SHARE
    return VectorSearchPlan(
        exact=exact,
        ef_search=HNSW_EF_SEARCH_LARGE if chunks > HNSW_LARGE_KB_CHUNKS else HNSW_EF_SEARCH,
        search_config=search_config,
    )


@dataclass(frozen=True)
class _Passage:
    """What a candidate shows if it is chosen: its text, where it sits and its document."""

    document_id: int
    text: str
    # jsonb comes back as its text through Django's connection (the model field parses it): parsed only for the
    # few candidates that are chosen (a search describes about 80).
    stored_heading_path: str | list[str]
    token_count: int
    title: str
    url: str

    @property
    def heading_path(self) -> list[str]:
        stored = self.stored_heading_path
        return json.loads(stored) if isinstance(stored, str) else stored


@dataclass(frozen=True)
class _Candidates:
    """What a search read of its candidates, by chunk id."""

    similarity: dict[int, float]  # to the question's vector
    passages: dict[int, _Passage]
    signatures: dict[int, bytes | None]  # token signatures, when asked for
    topic_similarity: dict[int, float] = field(default_factory=dict)  # to a topic vector, when given
    # The vector half's hits, nearest first, when it ran in the same statement (`_nearest_described`).
    nearest: list[tuple[int, float]] = field(default_factory=list)


def _candidates_describe(
    cursor, *, chunk_ids: list[int], vector: str | None, signatures: bool, topic: str | None = None
) -> _Candidates:
    """Cosine similarity to the question (when embedded: `vector`, its `vector_literal`), the passage and, when
    asked for, the token signature of each candidate; and its similarity to `topic` when given. One statement for
    every candidate: reading the chosen few's text afterwards cost another round trip and a Django query before the
    first token, and the text was read here anyway (it told duplicates apart)."""
    if not chunk_ids:
        return _Candidates(similarity={}, passages={}, signatures={})
    distance_column = "chunk.embedding <=> %s::vector" if vector is not None else "NULL"
    topic_column = "chunk.embedding <=> %s::vector" if topic is not None else "NULL"
    cursor.execute(
        f"SELECT chunk.id, {distance_column}, FALSE, {topic_column}, {_described_columns(signatures)}"
        " WHERE chunk.id = ANY(%s)",
        [value for value in (vector, topic) if value is not None] + [chunk_ids],
    )
    return _described(cursor.fetchall(), signatures=signatures)


def _nearest_described(
    cursor,
    *,
    knowledge_base_id: int,
    vector: str,
    limit: int,
    text_hit_ids: list[int],
    signatures: bool,
    exact: bool,
    ef_search: int,
) -> _Candidates:
    """The vector half (`NEAREST`, the planner set by `vector_search_prepared` for `exact` and `ef_search`) and
    `_candidates_describe` of its chunks and of the text half's, in one statement after the planner's settings: one
    round trip after the question's embedding, and none before it."""
    sql = (
        NEAREST + " SELECT chunk.id, chunk.embedding <=> (SELECT vector FROM question),"  # noqa: S608
        f" chunk.id IN (SELECT id FROM nearest), NULL, {_described_columns(signatures)}"
        " WHERE chunk.id = ANY(ARRAY(SELECT id FROM nearest) || %s::bigint[])"
    )
    params = [vector, knowledge_base_id, limit, text_hit_ids]
    vector_search_prepared(cursor, exact=exact, ef_search=ef_search, limit=limit, sql=sql, params=params)
    return _described(cursor.fetchall(), signatures=signatures)


def _described_columns(signatures: bool) -> str:
    """What `_described` reads of a candidate after its id, its distances and whether the vector half found it."""
    return (
        f"{'chunk.token_signature' if signatures else 'NULL'}, chunk.document_id, chunk.text, chunk.heading_path,"
        " chunk.token_count, document.title, document.filename, document.url"
        " FROM knowledge_chunk chunk JOIN knowledge_document document ON document.id = chunk.document_id"
    )


def _described(rows, *, signatures: bool) -> _Candidates:
    """The candidates of rows (id, distance to the question, found by the vector half, distance to the topic, then
    `_described_columns`)."""
    described = _Candidates(similarity={}, passages={}, signatures={})
    for row in rows:
        chunk_id, distance, found_nearest, topic_distance, token_signature, document_id, text = row[:7]
        heading_path, token_count, title, filename, url = row[7:]
        if distance is not None:
            described.similarity[chunk_id] = 1.0 - float(distance)
        if found_nearest:
            described.nearest.append((chunk_id, float(distance)))
        if topic_distance is not None:
            described.topic_similarity[chunk_id] = 1.0 - float(topic_distance)
        described.passages[chunk_id] = _Passage(
            document_id=document_id,
            text=text,
            stored_heading_path=heading_path,
            token_count=token_count,
            title=title or filename,
            url=url,
        )
        if signatures:
            described.signatures[chunk_id] = bytes(token_signature) if token_signature is not None else None
    described.nearest.sort(key=lambda hit: (hit[1], hit[0]))
    return described


def _late_interaction(
    *, query: str, query_tokens: np.ndarray | None, signatures: dict[int, bytes | None]
) -> tuple[dict[int, float], float]:
    """Late-interaction scores of the candidates, and the seconds spent embedding the question's tokens. No scores
    when a candidate has no signature (indexed by a TEI server, or before signatures existed and not re-indexed
    yet): one scale for every candidate or none."""
    if not signatures or any(signature is None for signature in signatures.values()):
        return {}, 0.0
    started = time.perf_counter()
    if query_tokens is None:
        # Only a caller that embedded the question itself, without its tokens, pays this second pass.
        query_tokens = get_embedder(settings.EMBEDDING_URL or None).embed_query_tokens(query)
    spent = time.perf_counter() - started
    if query_tokens is None:
        return {}, spent
    chunk_ids = list(signatures)
    scores = late_interaction_scores(query_tokens=query_tokens, signatures=[signatures[i] for i in chunk_ids])
    return dict(zip(chunk_ids, scores, strict=True)), spent
