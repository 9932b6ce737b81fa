"""A Celery worker killed (SIGKILL) in the middle of an answer: real Daphne, real worker, the TGI simulator, and a
visitor on a real websocket. The visitor gets an error within 10 s instead of an endless typing indicator, the
partial answer is saved and marked, and asking again works once a worker is back."""

import asyncio
import signal
import time

import pytest

from chatbot.answers.pipeline import answer_generate
from chatbot.answers.watchdog import WORKER_LOST
from chatbot.bots.services import bot_create
from chatbot.models import Message
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.tgi_simulator import TGISimulator
from tests.chatbot import stop_requests_forget
from tests.faults import ORIGIN, Visitor

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = " ".join(f"word{n}" for n in range(200))


@pytest.fixture
def stack(tmp_path):
    stop_requests_forget()
    with TGISimulator() as sim:
        sim.configure(tokens_per_s=20, script_text=WORDS)
        daphne = start_daphne(log_path=tmp_path / "daphne.log")
        worker = start_celery_worker(log_path=tmp_path / "worker.log", concurrency=4, TGI_URL=sim.url)
        yield sim, daphne, worker, tmp_path
        worker.stop()
        daphne.stop()


async def test_a_worker_killed_mid_answer_ends_it_with_an_error_and_a_new_worker_answers_again(stack):
    sim, daphne, worker, tmp_path = stack
    bot = await asyncio.to_thread(bot_create, slug="acme", name="Acme", allowed_origins=[ORIGIN])
    visitor = Visitor(daphne.url, bot.public_id)
    await visitor.connect()
    ack = await visitor.ask("Tell me a long story", client_id="first")
    assert ack["answer"] is True
    await visitor.next("token", timeout_s=20)
    await asyncio.sleep(1.0)  # a second of streaming: more than one checkpoint

    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(5)
    killed_at = time.monotonic()
    done = await visitor.next("done", timeout_s=10)
    error = await visitor.next("error", timeout_s=2)
    took = time.monotonic() - killed_at

    assert took < 10, f"the visitor waited {took:.1f} s"
    streamed = "".join(f["text"] for f in visitor.frames if f["type"] == "token")
    assert done["status"] == "error" and done["text"], "the partial answer is shown"
    assert streamed.startswith(done["text"][:20]) and "word0" in done["text"]
    assert (error["code"], error["retryable"]) == ("answer_failed", True)
    message = await Message.objects.aget(id=done["message_id"])
    assert (message.status, message.error_code) == (Message.Status.ERROR, WORKER_LOST)
    assert message.text == done["text"]

    # The task Celery redelivers later finds nothing to do.
    await asyncio.to_thread(answer_generate, message_id=message.id)
    await message.arefresh_from_db()
    assert (message.status, message.text) == (Message.Status.ERROR, done["text"])

    sim.configure(tokens_per_s=None, script_text="Back again.")
    new_worker = await asyncio.to_thread(
        start_celery_worker, log_path=tmp_path / "worker2.log", concurrency=4, TGI_URL=sim.url
    )
    try:
        await visitor.ask("Are you back?", client_id="second")
        again = await visitor.next("done", timeout_s=20, text="Back again.")
        assert again["status"] == "complete"
    finally:
        new_worker.stop()
        await visitor.close()
