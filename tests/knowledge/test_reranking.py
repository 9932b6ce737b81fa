"""The optional cross-encoder stage of hybrid search, against a stand-in for TEI's /rerank route over real HTTP.

The stand-in scores passages with a rule the test chooses (no reranker model ships offline here); what is checked
is Parley's side of the protocol: what it sends, how it orders by the answer, and that a reranker that fails never
fails a search.
"""

from collections.abc import Callable, Iterator

import pytest

from knowledge.reranking import RerankError, TEIReranker
from knowledge.retrieval import chunk_search
from tests.knowledge.conftest import faq_knowledge_base
from tests.knowledge.json_server import JSONHandler, JSONServer

pytestmark = pytest.mark.django_db

FAQ = [
    ("How long is the warranty on a kettle?", "Every kettle carries a two-year warranty from the day of delivery."),
    ("Can I return a kettle I have used?", "Used kettles can be returned within 30 days if they work as new."),
    ("Do you ship kettles abroad?", "We ship kettles to the EU and Switzerland; customs are paid by the buyer."),
]


class FakeReranker(JSONServer):
    """TEI's POST /rerank: answers [{"index", "score"}] sorted by score, from `score(query, text)`."""

    def __init__(self, score: Callable[[str, str], float], *, status: int = 200, body: object = None) -> None:
        self.requests: list[dict] = []
        fake = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                request = self.read_json()
                fake.requests.append({"path": self.path, **request})
                if body is not None or status != 200:
                    answer = body if body is not None else {"error": "model is loading", "error_type": "overloaded"}
                else:
                    ranked = [{"index": i, "score": score(request["query"], t)} for i, t in enumerate(request["texts"])]
                    answer = sorted(ranked, key=lambda item: -item["score"])
                self.send_json(status, answer)

        super().__init__(Handler)


@pytest.fixture
def kettles():
    return faq_knowledge_base("Kettles", FAQ)


@pytest.fixture
def reranker_serving(settings) -> Iterator[Callable[..., FakeReranker]]:
    started: list[FakeReranker] = []

    def start(score: Callable[[str, str], float] = lambda query, text: 0.0, **options) -> FakeReranker:
        fake = FakeReranker(score, **options)
        started.append(fake)
        settings.RERANK_URL = fake.url
        return fake

    yield start
    for fake in started:
        fake.close()


def test_without_a_reranker_the_first_stages_decide(kettles, settings):
    settings.RERANK_URL = ""

    result = chunk_search(knowledge_base_id=kettles.id, query="how long is the kettle warranty", k=3)

    assert "two-year warranty" in result.chunks[0].text
    assert all(chunk.rerank_score is None for chunk in result.chunks)
    assert "rerank_ms" not in result.timings


def test_a_reranker_orders_the_passages_by_its_scores(kettles, reranker_serving):
    # This reranker is sure that shipping answers every question: its order must win over the first stages'.
    fake = reranker_serving(lambda query, text: 0.9 if "customs" in text else 0.1)

    result = chunk_search(knowledge_base_id=kettles.id, query="how long is the kettle warranty", k=2)

    assert "customs are paid by the buyer" in result.chunks[0].text
    assert result.chunks[0].rerank_score == pytest.approx(0.9)
    assert result.chunks[1].rerank_score == pytest.approx(0.1)
    assert len(result.chunks) == 2
    [request] = fake.requests
    assert request["path"] == "/rerank"
    assert request["query"] == "how long is the kettle warranty"
    assert request["truncate"] is True
    assert len(request["texts"]) == 3, "every candidate up to RERANK_CANDIDATES is scored, not only the top k"
    assert any(text.startswith("Do you ship kettles abroad?") and "customs" in text for text in request["texts"])
    assert result.timings["rerank_ms"] > 0


def test_a_reranker_that_fails_leaves_the_first_stages_order_and_rests(kettles, reranker_serving, settings):
    settings.RERANK_COOLDOWN_S = 60
    fake = reranker_serving(status=503)

    first = chunk_search(knowledge_base_id=kettles.id, query="how long is the kettle warranty", k=3)
    second = chunk_search(knowledge_base_id=kettles.id, query="can I send back a used kettle", k=3)

    assert "two-year warranty" in first.chunks[0].text
    assert "returned within 30 days" in second.chunks[0].text
    assert all(chunk.rerank_score is None for chunk in first.chunks + second.chunks)
    assert len(fake.requests) == 1, "after a failure the reranker is left alone for the cool-down"


def test_an_unreachable_reranker_costs_no_search(kettles, settings):
    settings.RERANK_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.RERANK_TIMEOUT_S = 0.5

    result = chunk_search(knowledge_base_id=kettles.id, query="do you ship to Switzerland", k=3)

    assert "Switzerland" in result.chunks[0].text


def test_only_hybrid_search_is_reranked(kettles, reranker_serving):
    fake = reranker_serving(lambda query, text: 1.0)

    chunk_search(knowledge_base_id=kettles.id, query="kettle warranty", k=2, mode="vector")
    chunk_search(knowledge_base_id=kettles.id, query="kettle warranty", k=2, mode="text")

    assert fake.requests == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([{"index": 0, "score": 0.5}], "scored 1 of 2 passages"),
        ({"error": "Model is not a reranker", "error_type": "Validation"}, "unreadable answer"),
        ([{"index": 0}, {"index": 1}], "unreadable answer"),
    ],
)
def test_an_answer_that_does_not_score_every_passage_is_an_error(body, problem):
    fake = FakeReranker(lambda query, text: 0.0, body=body)
    try:
        with pytest.raises(RerankError, match=problem):
            TEIReranker(base_url=fake.url, timeout_s=2, cooldown_s=30).scores("q", ["a", "b"])
    finally:
        fake.close()


def test_a_model_that_is_not_a_reranker_is_a_clear_error():
    fake = FakeReranker(lambda query, text: 0.0, status=424, body={"error": "model is not a re-ranker"})
    try:
        with pytest.raises(RerankError, match=r"HTTP 424: .*not a re-ranker"):
            TEIReranker(base_url=fake.url, timeout_s=2, cooldown_s=30).scores("q", ["a"])
    finally:
        fake.close()
