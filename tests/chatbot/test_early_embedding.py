"""The worker starts a question's embedding as soon as the answer task arrives, before one of its threads takes the
task up; the answer's thread then joins that embedding instead of starting another."""

import threading
import time
from types import SimpleNamespace

from celery.signals import task_received

from chatbot.answers.pipeline import question_embedding_soon
from chatbot.answers.progress import ANSWER_TASK_NAME
from knowledge.embeddings import EMBEDDING_DIMENSIONS, embedder_in_use, get_embedder
from tests.knowledge.json_server import JSONHandler, JSONServer


class HeldTEI(JSONServer):
    """A text-embeddings-inference stand-in over real HTTP that holds each embedding until `release` is set."""

    def __init__(self) -> None:
        self.embedded: list[list[str]] = []
        self.asked = threading.Event()
        self.release = threading.Event()
        tei = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                self.send_json(200, {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "max_input_length": 512})

            def do_POST(self) -> None:
                payload = self.read_json()
                inputs = payload["inputs"] if isinstance(payload["inputs"], list) else [payload["inputs"]]
                tei.embedded.append(inputs)
                tei.asked.set()
                tei.release.wait(10)
                unit = [1.0] + [0.0] * (EMBEDDING_DIMENSIONS - 1)
                self.send_json(200, [unit for _ in inputs])

        super().__init__(Handler)

    def in_use(self) -> "HeldTEI":
        """As in a worker that has answered before: the embedder knows the server (its dimension probe is done)."""
        self.release.set()
        get_embedder(self.url)
        self.embedded.clear()
        self.asked.clear()
        self.release.clear()
        return self


def task_arrives(name: str, **kwargs) -> None:
    task_received.send(sender=None, request=SimpleNamespace(name=name, args=(), kwargs=kwargs))


def test_the_question_is_embedded_once_from_the_moment_its_task_arrives(settings):
    tei = HeldTEI().in_use()
    settings.EMBEDDING_URL = tei.url
    try:
        task_arrives(ANSWER_TASK_NAME, question="Can I return a gift without the receipt?")
        assert tei.asked.wait(10), "the embedding started before any thread ran the task"

        joined = question_embedding_soon("Can I return a gift without the receipt?")  # the answer's thread
        tei.release.set()

        assert joined.result(timeout=10).vector[0] == 1.0
        assert tei.embedded == [["Can I return a gift without the receipt?"]]
    finally:
        tei.release.set()
        tei.close()


def test_other_tasks_and_answer_tasks_without_the_question_start_nothing(settings):
    tei = HeldTEI().in_use()
    settings.EMBEDDING_URL = tei.url
    tei.release.set()
    try:
        task_arrives("chatbot.tasks.lost_answers_finalise")
        task_arrives("chatbot.tasks.other", question="Not an answer task")
        task_arrives(ANSWER_TASK_NAME)
        task_arrives(ANSWER_TASK_NAME, question=None)

        assert not tei.asked.wait(0.3)
    finally:
        tei.close()


def test_a_worker_not_yet_using_its_embedding_server_does_not_wait_for_it_when_a_task_arrives(settings):
    """The hook runs on Celery's consumer thread: making the embedder there would ask the server, and a server
    that hangs would stop the worker from taking tasks. The answer's thread makes it, as before."""
    tei = HeldTEI()  # holds every embedding until released: a server that hangs
    settings.EMBEDDING_URL = tei.url
    answering = threading.Thread(target=get_embedder, args=(tei.url,))  # an answer's thread makes the embedder
    try:
        arrived = time.monotonic()
        task_arrives(ANSWER_TASK_NAME, question="Do you ship abroad?")
        assert time.monotonic() - arrived < 1
        assert tei.embedded == []

        answering.start()
        assert tei.asked.wait(10), "the answer's thread is making the embedder; its probe hangs"
        arrived = time.monotonic()
        task_arrives(ANSWER_TASK_NAME, question="Do you ship abroad?")
        assert time.monotonic() - arrived < 1

        assert tei.embedded == [["dimension probe"]]
        assert embedder_in_use(tei.url) is None
    finally:
        tei.release.set()
        if answering.ident is not None:  # started
            answering.join(10)
        tei.close()
