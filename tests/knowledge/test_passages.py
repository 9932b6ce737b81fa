"""Choosing the passages to send: rank order, a relative and an absolute relevance cut-off, a maximum, and the
caller's budget cut."""

import pytest

from knowledge.passages import passages_choose
from knowledge.retrieval import RetrievedChunk, chunk_search


def chunk(chunk_id: int, *, score: float, similarity: float | None) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=chunk_id,
        document_id=1,
        text=f"passage {chunk_id}",
        heading_path=[],
        title="Guide",
        url="",
        score=score,
        similarity=similarity,
        vector_rank=None,
        text_rank=None,
    )


def test_it_sends_passages_in_rank_order_while_they_are_close_to_the_best():
    ranked = [
        chunk(1, score=1.2, similarity=0.6),
        chunk(2, score=1.0, similarity=0.5),
        chunk(3, score=0.7, similarity=0.4),
    ]

    choice = passages_choose(chunks=ranked, relative_cutoff=0.65)

    assert [c.chunk_id for c in choice.sent] == [1, 2]
    assert [(d.chunk.chunk_id, d.cut) for d in choice.decisions] == [(1, None), (2, None), (3, "below_relevance")]


def test_it_never_sends_a_passage_under_the_similarity_floor_even_near_the_best_score():
    ranked = [chunk(1, score=1.0, similarity=0.5), chunk(2, score=0.99, similarity=0.2)]

    assert [d.cut for d in passages_choose(chunks=ranked, min_similarity=0.25).decisions] == [None, "below_relevance"]


def test_it_stops_at_the_maximum_and_says_so():
    ranked = [chunk(n, score=1.0, similarity=0.5) for n in range(1, 11)]

    choice = passages_choose(chunks=ranked, max_passages=8)

    assert len(choice.sent) == 8
    assert [(d.chunk.chunk_id, d.cut) for d in choice.cut] == [(9, "over_max"), (10, "over_max")]


def test_the_caller_marks_what_did_not_fit_its_prompt():
    ranked = [chunk(n, score=1.0, similarity=0.5) for n in range(1, 4)]

    choice = passages_choose(chunks=ranked).over_budget({3, 99})

    assert [c.chunk_id for c in choice.sent] == [1, 2]
    assert [(d.chunk.chunk_id, d.cut) for d in choice.cut] == [(3, "over_budget")]


def test_a_text_only_passage_is_judged_by_its_score():
    ranked = [chunk(1, score=3.0, similarity=None), chunk(2, score=1.0, similarity=None)]

    assert [c.chunk_id for c in passages_choose(chunks=ranked).sent] == [1]


def test_nothing_to_choose_from_sends_nothing():
    assert passages_choose(chunks=[]).decisions == []
    with pytest.raises(ValueError):
        passages_choose(chunks=[], max_passages=-1)


@pytest.mark.django_db
def test_an_off_topic_question_sends_nothing_and_a_real_one_sends_what_answers(shop):
    off_topic = chunk_search(knowledge_base_id=shop.id, query="Which wine goes best with grilled salmon?", k=8)
    question = chunk_search(knowledge_base_id=shop.id, query="How long do parcels to Norway take?", k=8)

    assert passages_choose(chunks=off_topic.chunks).sent == []
    sent = passages_choose(chunks=question.chunks).sent
    assert sent[0].heading_path == ["Delivery to Norway"]
    assert len(sent) < len(question.chunks)  # the warranty's and the refund's pages are not sent
