import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from knowledge.embeddings import (
    EMBEDDING_DIMENSIONS,
    EMBEDDING_MAX_TOKENS,
    EmbeddingError,
    EmbeddingSizeMismatch,
    LocalEmbedder,
    TEIEmbedder,
    get_embedder,
    local_model_path,
)
from knowledge.query_batching import QueryBatcher
from tests.knowledge.json_server import JSONHandler, JSONServer


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return get_embedder(None)  # type: ignore[return-value]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_it_declares_the_dimension_the_model_really_has(embedder):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(local_model_path()), device="cpu")

    assert model.get_embedding_dimension() == EMBEDDING_DIMENSIONS
    assert embedder.dimension == EMBEDDING_DIMENSIONS
    assert len(embedder.embed_query("How long do refunds take?")) == EMBEDDING_DIMENSIONS
    assert model.max_seq_length == EMBEDDING_MAX_TOKENS == embedder.max_tokens


def test_it_embeds_documents_in_order_as_unit_vectors(embedder):
    texts = ["Refunds are paid within 14 days.", "Our office is closed on Sundays.", "The cat sat on the mat."]

    vectors = embedder.embed_documents(texts)
    query = embedder.embed_query("When do I get my money back?")

    assert len(vectors) == 3
    assert all(math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-4) for vector in vectors)
    similarities = [cosine(query, vector) for vector in vectors]
    assert similarities.index(max(similarities)) == 0
    assert embedder.embed_documents([]) == []


def test_it_counts_tokens_like_the_model_including_special_tokens(embedder):
    assert embedder.count_tokens("") == 2  # [CLS] and [SEP]
    assert embedder.count_tokens("hello world") == 4
    # The packaged tokenizer.json truncates at 128 tokens; counting must not.
    assert embedder.count_tokens("word " * 500) == 502
    assert embedder.token_offsets("hello world") == [(0, 5), (6, 11)]


def test_it_gives_one_embedder_per_configuration(embedder):
    assert get_embedder(None) is embedder
    assert isinstance(embedder, LocalEmbedder)


def test_it_loads_the_model_once_when_threads_race(embedder):
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: LocalEmbedder().embed_query("same text"), range(8)))

    assert all(result == results[0] for result in results)


class FakeTEI(JSONServer):
    """A stand-in for a text-embeddings-inference server: /info and the root embedding route, over real HTTP."""

    def __init__(self, *, info: dict[str, object] | None, dimension: int = 8, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        fake = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                if self.path == "/info" and info is not None:
                    self.send_json(200, info)
                else:
                    self.send_json(404, {"error": "not found"})

            def do_POST(self) -> None:
                payload = self.read_json()
                inputs = payload["inputs"] if isinstance(payload["inputs"], list) else [payload["inputs"]]
                fake.batches.append(inputs)
                if fail:
                    self.send_json(500, {"error": "model crashed", "error_type": "backend"})
                    return
                vectors = [[float(len(text) + i) for i in range(dimension)] for text in inputs]
                self.send_json(200, [[x / math.sqrt(sum(v * v for v in vec)) for x in vec] for vec in vectors])

        super().__init__(Handler)


@pytest.fixture
def tei_server() -> Iterator[FakeTEI]:
    server = FakeTEI(info={"model_id": "sentence-transformers/all-MiniLM-L6-v2", "max_input_length": 512})
    yield server
    server.close()


def test_it_embeds_through_a_tei_server_in_batches(tei_server):
    tei = TEIEmbedder(base_url=tei_server.url, batch_size=2)

    vectors = tei.embed_documents(["a", "bb", "ccc", "dddd", "eeeee"])

    assert tei.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert tei.dimension == 8  # discovered from the server, not assumed
    assert tei.max_tokens == EMBEDDING_MAX_TOKENS  # the server accepts 512, the model reads 256
    assert len(vectors) == 5
    assert [len(batch) for batch in tei_server.batches[1:]] == [2, 2, 1]
    assert tei.count_tokens("hello world") == 4


def test_it_works_with_a_server_without_info():
    server = FakeTEI(info=None, dimension=4)
    try:
        tei = TEIEmbedder(base_url=server.url)
        assert (tei.model_name, tei.dimension) == ("sentence-transformers/all-MiniLM-L6-v2", 4)
    finally:
        server.close()


def test_it_reports_a_failing_tei_server():
    server = FakeTEI(info={"model_id": "x", "max_input_length": 128}, fail=True)
    try:
        with pytest.raises(EmbeddingError, match="embedding server"):
            TEIEmbedder(base_url=server.url)
    finally:
        server.close()


def test_it_picks_the_tei_embedder_when_a_url_is_configured():
    server = FakeTEI(info={"model_id": "sentence-transformers/all-MiniLM-L6-v2"}, dimension=EMBEDDING_DIMENSIONS)
    try:
        chosen = get_embedder(server.url + "/")

        assert isinstance(chosen, TEIEmbedder)
        assert get_embedder(server.url) is chosen
    finally:
        server.close()


def test_it_refuses_a_tei_server_whose_vectors_are_not_the_size_the_database_stores():
    server = FakeTEI(info={"model_id": "BAAI/bge-base-en-v1.5"}, dimension=768)
    try:
        with pytest.raises(EmbeddingSizeMismatch) as refused:
            get_embedder(server.url)

        message = str(refused.value)
        assert server.url in message and "BAAI/bge-base-en-v1.5" in message
        assert "768 dimensions" in message and f"{EMBEDDING_DIMENSIONS} dimensions" in message
        assert "EMBEDDING_URL" in message
        # Still refused at the next use: a refused embedder is not kept.
        with pytest.raises(EmbeddingSizeMismatch):
            get_embedder(server.url)
    finally:
        server.close()


def test_a_multilingual_model_of_the_right_size_is_accepted():
    server = FakeTEI(
        info={"model_id": "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", "max_input_length": 128},
        dimension=EMBEDDING_DIMENSIONS,
    )
    try:
        embedder = get_embedder(server.url)

        assert (embedder.model_name, embedder.dimension) == (
            "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
            EMBEDDING_DIMENSIONS,
        )
        assert embedder.max_tokens == 128
    finally:
        server.close()


def test_questions_asked_at_the_same_moment_are_embedded_in_batches_each_getting_its_own_vector(embedder):
    batch_sizes: list[int] = []

    def embed_documents(texts: list[str]) -> list[list[float]]:
        batch_sizes.append(len(texts))
        return embedder.embed_documents(texts)

    batcher = QueryBatcher(embed_documents)
    questions = [f"Can I return order {n} after thirty days?" for n in range(24)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        vectors = list(pool.map(lambda question: batcher.submit(question).result(timeout=60), questions))

    assert sum(batch_sizes) == 24
    assert len(batch_sizes) < 24, "questions that queued while a batch ran went together"
    for question, vector in zip(questions, vectors, strict=True):
        assert cosine(vector, embedder.embed_documents([question])[0]) > 0.9999


def test_a_failed_batch_fails_every_question_in_it_and_the_next_ones_still_work():
    failing = {"now": True}

    def embed_documents(texts: list[str]) -> list[list[float]]:
        if failing["now"]:
            raise EmbeddingError("the embedding server is down")
        return [[1.0, 0.0] for _ in texts]

    batcher = QueryBatcher(embed_documents)
    with pytest.raises(EmbeddingError):
        batcher.submit("first").result(timeout=10)
    failing["now"] = False
    assert batcher.submit("second").result(timeout=10) == [1.0, 0.0]


def test_a_question_embedded_lately_comes_back_without_another_forward_pass():
    """A follow-up's search embeds the visitor's earlier messages, which were questions moments before."""
    batches: list[list[str]] = []

    def embed_batch(texts: list[str]) -> list[str]:
        batches.append(list(texts))
        return [f"vector of {text}" for text in texts]

    batcher = QueryBatcher(embed_batch, remember=2)
    assert batcher.submit("How long does shipping take?").result(timeout=10) == "vector of How long does shipping take?"
    follow_up, earlier = batcher.submit_many(["And to Norway?", "How long does shipping take?"])

    assert earlier.result(timeout=10) == "vector of How long does shipping take?"
    assert follow_up.result(timeout=10) == "vector of And to Norway?"
    assert batches == [["How long does shipping take?"], ["And to Norway?"]]
    batcher.submit("A third question").result(timeout=10)
    batcher.submit("How long does shipping take?").result(timeout=10)
    assert batches[-1] == ["How long does shipping take?"], "only the last `remember` questions are kept"


def test_a_question_asked_again_while_it_is_being_embedded_shares_that_forward_pass():
    """The worker starts a question's embedding when its task arrives; the answer's thread asks again a moment
    later. A long question, which is not remembered, is not embedded twice either."""
    started, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def embed_batch(texts: list[str]) -> list[str]:
        batches.append(list(texts))
        started.set()
        release.wait(10)
        return [f"vector {len(batches)}" for _ in texts]

    batcher = QueryBatcher(embed_batch)
    long_question = "Where is my parcel? " * 100
    early = batcher.submit(long_question)
    assert started.wait(10)
    again = batcher.submit(long_question)
    release.set()

    assert early.result(timeout=10) == again.result(timeout=10) == "vector 1"
    assert batches == [[long_question]]
    assert batcher.submit(long_question).result(timeout=10) == "vector 2", "once embedded, it is asked anew"


def test_a_failed_question_is_not_remembered():
    failing = {"now": True}

    def embed_batch(texts: list[str]) -> list[str]:
        if failing["now"]:
            raise EmbeddingError("the embedding server is down")
        return ["vector" for _ in texts]

    batcher = QueryBatcher(embed_batch)
    with pytest.raises(EmbeddingError):
        batcher.submit("Where is my parcel?").result(timeout=10)
    failing["now"] = False
    assert batcher.submit("Where is my parcel?").result(timeout=10) == "vector"


def test_questions_are_embedded_on_one_torch_thread_and_other_threads_keep_theirs(settings):
    import torch

    settings.EMBEDDING_QUERY_THREADS = 1
    embedder = LocalEmbedder(backend="torch")
    threads_before = torch.get_num_threads()
    batcher = QueryBatcher(
        lambda texts: [torch.get_num_threads() for _ in texts], thread_setup=embedder.query_thread_setup
    )

    assert batcher.submit("How long does shipping take?").result(timeout=10) == 1
    assert torch.get_num_threads() == threads_before, "ingestion on other threads keeps its thread count"
    with ThreadPoolExecutor(1) as new_thread:  # like a Celery thread ingesting its first document
        assert new_thread.submit(torch.get_num_threads).result() == threads_before, "and so do new threads"
