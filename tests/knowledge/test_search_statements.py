"""A search outside any transaction (an answer's) opens none of its own: each BEGIN and COMMIT would be one more
round trip before the first token. The planner's settings for its vector half go in one string with that
statement, PostgreSQL's implicit transaction, and end with it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from knowledge import retrieval
from knowledge.conversation import conversation_search
from knowledge.nearest import vector_search_prepared
from knowledge.retrieval import chunk_search
from tests.knowledge.conftest import faq_knowledge_base

pytestmark = pytest.mark.django_db(transaction=True)

FAQ = [
    ("How do refunds work?", "Refunds go back to the card you paid with, within five working days."),
    ("Can I return a gift?", "Gifts can be returned within 30 days for store credit."),
    ("Where do you ship?", "We ship to every country in the European Union and to Norway."),
]


@pytest.fixture
def knowledge_base():
    return faq_knowledge_base("shop", FAQ)


@pytest.fixture(params=["hnsw", "exact"])
def search_kind(request, monkeypatch):
    if request.param == "hnsw":
        monkeypatch.setattr(retrieval, "EXACT_SEARCH_ALWAYS_CHUNKS", 0)
        monkeypatch.setattr(retrieval, "HNSW_MIN_SHARE", 0.0)
    return request.param


def planner() -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan'),"
            " current_setting('enable_indexscan')"
        )
        return cursor.fetchone()


def transaction_control(statements: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in statements.captured_queries
        if query["sql"].split(None, 1)[0].upper() in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}
    ]


def test_first_questions_and_follow_ups_are_searched_without_a_transaction_and_leave_the_planner_as_it_was(
    knowledge_base, search_kind
):
    as_it_was = planner()

    with CaptureQueriesContext(connection) as first:
        found = chunk_search(knowledge_base_id=knowledge_base.id, query="how long does a refund take", k=2)
    with CaptureQueriesContext(connection) as follow_up:
        followed = conversation_search(
            knowledge_base_id=knowledge_base.id,
            question="and for a gift?",
            history=["How do refunds work?"],
            previous_chunk_ids=[found.chunks[0].chunk_id],
            k=2,
        )

    with CaptureQueriesContext(connection) as focused:
        # A search given documents to favour and no vector half of the caller's: its walk, then those documents.
        in_focus = chunk_search(
            knowledge_base_id=knowledge_base.id,
            query="and for a gift?",
            k=2,
            focus_documents={found.chunks[0].document_id: 0.05},
        )

    assert "five working days" in found.chunks[0].text
    assert "Gifts" in followed.chunks[0].text
    assert "Gifts" in in_focus.chunks[0].text
    assert transaction_control(first) == transaction_control(follow_up) == transaction_control(focused) == []
    assert planner() == as_it_was == ("on", "on", "on")


def test_the_planners_settings_hold_for_the_statement_sent_with_them_and_end_with_it():
    with connection.cursor() as cursor:
        vector_search_prepared(
            cursor,
            exact=False,
            ef_search=200,
            limit=40,
            sql="SELECT current_setting('hnsw.ef_search'), current_setting('enable_seqscan')",
            params=[],
        )
        assert cursor.fetchone() == ("200", "off")
        vector_search_prepared(
            cursor, exact=True, ef_search=0, limit=40, sql="SELECT current_setting('enable_indexscan')", params=[]
        )
        assert cursor.fetchone() == ("off",)

    assert planner() == ("on", "on", "on")
