"""Conversation-aware retrieval on the real database with the real embedding model, over the small shop's help
pages of conftest.py."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from knowledge import retrieval
from knowledge.conversation import conversation_search
from knowledge.embeddings import get_embedder
from knowledge.retrieval import MIN_RELEVANCE, chunk_search
from tests.knowledge.embedding_wait import EmbeddingDoneWhenAskedFor

pytestmark = pytest.mark.django_db


def _statements(queries) -> list[str]:
    # Savepoint names differ from one transaction to the next; the statements must not.
    return [re.sub(r'"s\d+_x\d+"', "SAVEPOINT", query["sql"]) for query in queries]


def sections(result) -> list[str]:
    return [chunk.heading_path[-1] for chunk in result.chunks]


def test_it_answers_a_follow_up_from_the_earlier_turn(shop):
    first = chunk_search(knowledge_base_id=shop.id, query="Do you ship to Norway?", k=3)
    alone = chunk_search(knowledge_base_id=shop.id, query="How long does it take?", k=3)

    follow_up = conversation_search(
        knowledge_base_id=shop.id,
        question="How long does it take?",
        history=["Do you ship to Norway?"],
        previous_chunk_ids=[chunk.chunk_id for chunk in first.chunks],
        k=3,
    )

    assert sections(alone)[0] != "Delivery to Norway"  # the question alone is about any duration
    assert follow_up.context == "follow_up"
    assert sections(follow_up)[0] == "Delivery to Norway"
    assert follow_up.timings["context_embed_ms"] > 0


def test_it_searches_a_change_of_subject_as_a_question_of_its_own(shop):
    first = chunk_search(knowledge_base_id=shop.id, query="Do you ship to Norway?", k=3)

    result = conversation_search(
        knowledge_base_id=shop.id,
        question="How long is the warranty on a kettle?",
        history=["Do you ship to Norway?"],
        previous_chunk_ids=[chunk.chunk_id for chunk in first.chunks],
        k=3,
    )

    assert result.context == "standalone"
    assert sections(result)[0] == "How long the warranty lasts"


def test_a_follow_up_that_opens_with_and_keeps_the_thread_without_earlier_passages(shop):
    result = conversation_search(
        knowledge_base_id=shop.id,
        question="and when do I get my money back?",
        history=["Can I return a kettle I don't like?"],
        k=2,
    )

    assert result.context == "follow_up"
    assert set(sections(result)) == {"Sending something back", "Refunds"}


def test_a_first_question_costs_exactly_what_a_plain_search_costs(shop):
    embedded = get_embedder(None).embed_query_soon("Do you ship to Norway?").result()

    with CaptureQueriesContext(connection) as plain_queries:
        plain = chunk_search(
            knowledge_base_id=shop.id,
            query="Do you ship to Norway?",
            k=3,
            embedding=embedded.vector,
            query_tokens=embedded.tokens,
        )
    with CaptureQueriesContext(connection) as conversation_queries:
        first = conversation_search(
            knowledge_base_id=shop.id, question="Do you ship to Norway?", history=["", "  "], k=3, embedded=embedded
        )

    assert _statements(conversation_queries) == _statements(plain_queries)
    assert first.context == "none"
    assert "context_embed_ms" not in first.timings
    assert [chunk.chunk_id for chunk in first.chunks] == [chunk.chunk_id for chunk in plain.chunks]


def test_a_rewrite_hook_is_asked_only_for_follow_ups_and_its_question_is_searched(shop):
    asked = []
    transactions_open = len(connection.atomic_blocks)  # the test's own
    transactions_while_asked = []

    def rewrite(*, question, history):
        asked.append((question, list(history)))
        # A model may take its time: the search's transaction is not held open meanwhile.
        transactions_while_asked.append(len(connection.atomic_blocks))
        return "How many working days does delivery to Norway take?"

    follow_up = conversation_search(
        knowledge_base_id=shop.id,
        question="How long does it take?",
        history=["Do you ship to Norway?"],
        k=3,
        rewrite=rewrite,
    )
    conversation_search(
        knowledge_base_id=shop.id,
        question="How long is the warranty on a kettle?",
        history=["Do you ship to Norway?"],
        k=3,
        rewrite=rewrite,
    )

    assert asked == [("How long does it take?", ["Do you ship to Norway?"])]
    assert transactions_while_asked == [transactions_open]
    assert follow_up.context == "rewritten"
    assert sections(follow_up)[0] == "Delivery to Norway"


def test_a_rewrite_hook_that_gives_nothing_leaves_the_embedding_based_search(shop):
    result = conversation_search(
        knowledge_base_id=shop.id,
        question="How long does it take?",
        history=["Do you ship to Norway?"],
        k=3,
        rewrite=lambda *, question, history: None,
    )

    assert result.context == "follow_up"
    assert sections(result)[0] == "Delivery to Norway"


def test_a_follow_up_is_judged_relevant_by_the_conversation_s_topic(shop):
    alone = chunk_search(knowledge_base_id=shop.id, query="and how long until the money is back?", k=2)

    follow_up = conversation_search(
        knowledge_base_id=shop.id,
        question="and how long until the money is back?",
        history=["Can I return a kettle I don't like?"],
        k=2,
    )

    refund = next(chunk for chunk in follow_up.chunks if chunk.heading_path == ["Refunds"])
    sending_back = next(chunk for chunk in follow_up.chunks if chunk.heading_path == ["Sending something back"])
    # Each passage is judged by the closer of the search's vector and the conversation's topic; the earlier turn's
    # subject by the topic.
    assert all(chunk.similarity >= chunk.topic_similarity for chunk in follow_up.chunks)
    assert sending_back.similarity == pytest.approx(sending_back.topic_similarity)
    assert follow_up.relevant
    assert refund.similarity >= MIN_RELEVANCE
    assert refund.similarity > max(chunk.similarity for chunk in alone.chunks if chunk.chunk_id == refund.chunk_id)


@pytest.mark.parametrize("through_hnsw", [True, False], ids=["hnsw", "exact"])
def test_a_follow_ups_text_half_runs_while_its_question_is_embedded_and_its_vectors_in_one_round_trip(
    shop, monkeypatch, through_hnsw
):
    """Every statement of a follow-up's search is in one transaction (no savepoint inside a caller's). The full-text
    half (the recent turns' words) and the previous passages' documents are read before the search waits for the
    question's embedding; after it, the planner's settings and one walk, the mixed vector's, measured against the
    question alone as well, are one round trip, and the passages' similarity to the topic is read with the
    candidates."""
    if through_hnsw:
        monkeypatch.setattr(retrieval, "EXACT_SEARCH_ALWAYS_CHUNKS", 0)
        monkeypatch.setattr(retrieval, "HNSW_MIN_SHARE", 0.0)
    first = chunk_search(knowledge_base_id=shop.id, query="Do you ship to Norway?", k=3)
    question = "How long does it take?"
    embedding_soon = EmbeddingDoneWhenAskedFor(get_embedder(None).embed_query_soon(question).result())
    before, after = [], []

    def statements(execute, sql, params, many, context):
        (after if embedding_soon.asked else before).append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(statements):
        follow_up = conversation_search(
            knowledge_base_id=shop.id,
            question=question,
            history=["Do you ship to Norway?"],
            previous_chunk_ids=[chunk.chunk_id for chunk in first.chunks],
            k=3,
            embedding_soon=embedding_soon,
        )

    assert follow_up.context == "follow_up"
    assert sections(follow_up)[0] == "Delivery to Norway"
    assert any("AS scored" in sql for sql in before) and not any("<=>" in sql for sql in before)
    assert not any("SAVEPOINT" in sql for sql in before + after)
    [both_vectors] = [sql for sql in after if "ORDER BY embedding <=>" in sql]
    assert both_vectors.count("ORDER BY embedding <=>") == 1 and "compared" in both_vectors
    assert ("hnsw.ef_search" in both_vectors) == through_hnsw
    # The planner's settings with both vectors, the settings put back, the previous documents' nearest chunks, and
    # the candidates with their similarity to the question and to the topic.
    assert len(after) == 4, after
