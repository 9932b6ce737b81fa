"""Retrieval that keeps the thread of a conversation.

"How do I make a temporary folder that cleans itself up?" then "and can I choose where it goes?": the follow-up
alone retrieves whatever talks about choosing and going. `conversation_search` decides whether the latest question
leans on the earlier turns and, when it does, searches with the conversation's context:

- **Dependence**: the question is embedded alone and mixed with the earlier visitor turns (their vectors, the most
  recent weighing most). When the mix finds a closer passage in the knowledge base than the question alone, or the
  question opens like a follow-up ("and …", "what about …"), it depends on the earlier turns. A question that
  stands on its own (a change of subject) is searched exactly as a first question.
- **Context**: the mixed vector for the vector half, the words of the recent turns for the full-text half, and a
  bonus for the documents the previous answer's passages came from (their nearest chunks join the candidates).
- **Rewrite** (optional): a callable the caller passes in, typically a model that turns the follow-up into a
  standalone question when a model is configured and the time budget allows. It is only asked for follow-ups, and
  its question is searched as a first question would be. This module never calls a model itself.

No model round trip on the hot path: a question with history costs one forward pass for the earlier turns (none
when they were asked of this process lately: the embedder remembers its recent questions), one vector search, the
mixed vector's, which serves both the decision and the search (the question alone is measured against the chunks it
finds: its own nearest chunk was among them in all 252 evaluation cases, so it needs no walk of the graph of its
own), and a small query for the documents of the previous answer's passages;
for a follow-up, their nearest chunks too. The passages' similarity to the topic is read with the candidates. No
transaction of its own (each statement is PostgreSQL's own, the planner's settings go with the vector half's), and
the full-text half (the recent turns' words) runs while the question's embedding finishes. A
first question (no history) costs exactly what `chunk_search` costs. Measured on
tests/fixtures/eval/conversations.jsonl, see docs/retrieval.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Literal, Protocol

import numpy as np
from django.conf import settings
from django.db import connection

from knowledge.embeddings import QueryEmbedding, get_embedder
from knowledge.full_text import text_search
from knowledge.retrieval import (
    CANDIDATES,
    MIN_RELEVANCE,
    SearchResult,
    chunk_search,
    query_embedding_result,
    vector_neighbours,
    vector_search_plan,
)

# Earlier visitor turns that count, most recent first; older ones rarely help and often mislead.
CONTEXT_TURNS = 2
# Weight of the previous turn's vector in the mix (the question weighs 1); it halves for each turn further back.
CONTEXT_WEIGHT = 0.3
CONTEXT_DECAY = 0.5
# Score bonus for chunks of the documents the previous answer's best passages came from.
FOCUS_BONUS = 0.2
FOCUS_PASSAGES = 3
# A question depends on the earlier turns when the mix of its vector with theirs finds a closer passage than it does
# alone by more than this (or when it opens like a follow-up).
DEPENDENCE_MARGIN = -0.02
# Openings that only make sense after something else was said.
_FOLLOW_UP_OPENING = re.compile(r"^\W*(and|but|or|also|then|what about|how about|what if|same for)\b", re.IGNORECASE)

SearchContext = Literal["none", "standalone", "follow_up", "rewritten"]


class QuestionRewrite(Protocol):
    """Turns a follow-up into a standalone question, or returns None to keep the embedding-based search. Called
    only for follow-ups; the caller bounds its time (a model call with a timeout, say)."""

    def __call__(self, *, question: str, history: Sequence[str]) -> str | None: ...


def conversation_search(
    *,
    knowledge_base_id: int,
    question: str,
    history: Sequence[str] = (),
    previous_chunk_ids: Sequence[int] = (),
    k: int = 5,
    mode: str = "hybrid",
    candidates: int = CANDIDATES,
    embedded: QueryEmbedding | None = None,
    embedding_soon: Future | None = None,
    rewrite: QuestionRewrite | None = None,
) -> SearchResult:
    """The `k` chunks that best answer `question` in the light of the conversation so far.

    `history` is the visitor's earlier messages, oldest first (the bot's answers are not needed); `previous_chunk_ids`
    the passages of the bot's previous answer, best first (its trace). `embedded` is the question's embedding when
    the caller has it, `embedding_soon` (a Future of it, `Embedder.embed_query_soon`) when it is under way: a first
    question's full-text half then runs while it finishes. Without history this is `chunk_search`, no more.
    The result's `context` says which search ran: "none" (no history), "standalone", "follow_up" or "rewritten"."""
    recent = [turn for turn in history if turn.strip()][-CONTEXT_TURNS:]
    embedder = get_embedder(settings.EMBEDDING_URL or None)
    if not recent or mode == "text":
        # A first question (and a text-only search, which has no vectors to mix): exactly today's search.
        return chunk_search(
            knowledge_base_id=knowledge_base_id,
            query=question,
            k=k,
            mode=mode,
            candidates=candidates,
            embedding=embedded.vector if embedded else None,
            query_tokens=embedded.tokens if embedded else None,
            embedding_soon=None if embedded else embedding_soon,
        )
    question_soon = None if embedded is not None else embedding_soon or embedder.embed_query_soon(question)
    turns_soon = [embedder.embed_query_soon(turn) for turn in reversed(recent)]
    text_query = " ".join([*recent, question])
    # What needs no vector first, while the question's embedding finishes: the full-text half (it searches the
    # words of the recent turns whatever is decided below) and the documents of the previous answer's passages.
    # No transaction of its own, as chunk_search's: each BEGIN and COMMIT would be a round trip.
    with connection.cursor() as cursor:
        plan = vector_search_plan(cursor, knowledge_base_id)
        text_hits = None
        if mode != "vector":
            text_hits = text_search(
                cursor,
                knowledge_base_id=knowledge_base_id,
                query=text_query,
                limit=candidates,
                search_config=plan.search_config,
            )
        focus = _focus_documents(cursor, previous_chunk_ids)

        started = time.perf_counter()
        if embedded is None:
            embedded = query_embedding_result(question_soon, question)
        results = [future.result() for future in turns_soon]
        mixed = _mixed_vector(embedded.vector, [turn.vector for turn in results], weight=CONTEXT_WEIGHT)
        embed_ms = (time.perf_counter() - started) * 1000

        # The mixed vector's neighbours are also the search's vector half below: searched once. The question alone
        # is measured against them as they are read (the mix leans on the question: its nearest are among them).
        neighbours = vector_neighbours(
            knowledge_base_id=knowledge_base_id,
            embeddings=[mixed],
            compared=embedded.vector,
            limit=candidates,
            plan=plan,
        )
        [mixed_hits], alone_nearest = neighbours.hits, neighbours.compared_nearest
        best_alone = 1.0 - alone_nearest[1] if alone_nearest else 0.0
        best_mixed = 1.0 - mixed_hits[0][1] if mixed_hits else 0.0
        context: SearchContext = "standalone"
        if best_mixed > best_alone + DEPENDENCE_MARGIN or _FOLLOW_UP_OPENING.match(question):
            context = "follow_up"
        decided_ms = (time.perf_counter() - started) * 1000 - embed_ms

        follow_up = context == "follow_up"

        def search() -> SearchResult:
            return chunk_search(
                knowledge_base_id=knowledge_base_id,
                query=question,
                k=k,
                mode=mode,
                candidates=candidates,
                embedding=mixed,
                query_tokens=embedded.tokens,
                text_query=text_query,
                focus_documents=focus if follow_up else None,
                vector_hits=mixed_hits,
                search_config=plan.search_config,
                text_hits=text_hits,
                # The conversation's topic: the question and the earlier turns weighing alike.
                topic_embedding=_mixed_vector(embedded.vector, [t.vector for t in results], weight=1.0)
                if follow_up
                else None,
            )

        rewriting = follow_up and rewrite is not None
        if not rewriting:
            result = search()
    if rewriting:
        # Asked after the cursor is closed: a model may take its time.
        rewritten = (rewrite(question=question, history=list(history)) or "").strip()
        if rewritten and rewritten != question.strip():
            result = chunk_search(knowledge_base_id=knowledge_base_id, query=rewritten, k=k, mode=mode)
            return _with_context(result, "rewritten", embed_ms=embed_ms, decided_ms=decided_ms)
        result = search()
    if follow_up:
        result = _judged_with_topic(result)
    return _with_context(result, context, embed_ms=embed_ms, decided_ms=decided_ms)


def _mixed_vector(question: list[float], earlier_newest_first: list[list[float]], *, weight: float) -> list[float]:
    mixed = np.asarray(question, dtype=np.float64)
    for age, vector in enumerate(earlier_newest_first):
        mixed = mixed + weight * CONTEXT_DECAY**age * np.asarray(vector, dtype=np.float64)
    return (mixed / max(float(np.linalg.norm(mixed)), 1e-12)).tolist()


def _judged_with_topic(result: SearchResult) -> SearchResult:
    """A follow-up says little on its own ("and get them back afterwards?"): its passages' similarity, which
    judges relevance (and the passages sent), is also taken against the conversation's topic, the question and
    the earlier turns weighing alike (the search's `topic_similarity`). The answering passage of 91% of the
    follow-ups of the evaluation set reaches MIN_RELEVANCE that way, 69% against the search's own vector."""
    chunks = [
        replace(chunk, similarity=max(chunk.similarity or 0.0, chunk.topic_similarity or 0.0))
        for chunk in result.chunks
    ]
    return replace(result, chunks=chunks, relevant=any(chunk.similarity >= MIN_RELEVANCE for chunk in chunks))


def _focus_documents(cursor, previous_chunk_ids: Sequence[int]) -> dict[int, float]:
    best = list(previous_chunk_ids)[:FOCUS_PASSAGES]
    if not best:
        return {}
    cursor.execute("SELECT id, document_id FROM knowledge_chunk WHERE id = ANY(%s)", [best])
    documents = dict(cursor.fetchall())
    return {documents[chunk_id]: FOCUS_BONUS for chunk_id in best if chunk_id in documents}


def _with_context(result: SearchResult, context: SearchContext, *, embed_ms: float, decided_ms: float) -> SearchResult:
    timings = {**result.timings, "context_embed_ms": embed_ms, "context_decision_ms": decided_ms}
    return replace(
        result,
        context=context,
        embed_ms=result.embed_ms + embed_ms,
        search_ms=result.search_ms + decided_ms,
        timings=timings,
    )
