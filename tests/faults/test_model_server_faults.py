"""The model server down, slow, or failing mid-stream (the TGI simulator injects each) under 20 concurrent answers,
and the circuit breaker that stops hammering a dead model server (state in Redis, shared by every worker)."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from chatbot.answers.pipeline import answer_generate
from chatbot.bots.services import bot_create
from chatbot.models import Message
from chatbot.ops import circuit
from tests.chatbot import GroupListener, page_add, question_ask

pytestmark = pytest.mark.django_db(transaction=True)
CONCURRENT = 20


@pytest.fixture
def sim(sim):
    """The shared simulator fixture (tests/conftest.py), with the circuit breaker closed before and after."""
    circuit.circuit_reset(endpoint=sim.url)
    yield sim
    circuit.circuit_reset(endpoint=sim.url)


@pytest.fixture
def bot(db):
    bot = bot_create(slug="acme", name="Acme", allowed_origins=["https://www.acme.test"])
    page_add(bot, title="Refunds", url="https://www.acme.test/help/refunds",
             text="You can ask for a refund within 30 days of purchase.")  # fmt: skip
    return bot


def _answer(message_id: int) -> None:
    try:
        answer_generate(message_id=message_id)
    finally:
        connection.close()


def answer_all(messages: list[Message], *, timeout_s: float = 30) -> tuple[dict[int, list[dict]], list[dict]]:
    """Answer every message at once, each on a worker thread: the events of each answer, and every event."""
    with GroupListener(*(m.conversation.group_name for m in messages)) as listener:
        with ThreadPoolExecutor(len(messages)) as pool:
            list(pool.map(_answer, [m.id for m in messages]))
        listener.wait_until(lambda events: sum(e["type"] == "chat.done" for e in events) == len(messages),
                            timeout_s=timeout_s)  # fmt: skip
        listener.settle()
    return {m.id: listener.events_of(m.id) for m in messages}, listener.events


@pytest.mark.parametrize(
    "fault, expected_status, expect_error",
    [
        ("down", "retrieval_only", False),
        ("slow", "retrieval_only", False),
        ("error_midstream", "error", True),
    ],
)
def test_under_20_concurrent_answers_each_visitor_gets_a_clear_end(sim, bot, settings, fault, expected_status,
                                                                   expect_error):  # fmt: skip
    settings.TGI_CIRCUIT_FAILURES = 1000  # this test is about each answer, not the breaker
    if fault == "down":
        sim.stop_listening()
    elif fault == "slow":
        settings.TGI_TIMEOUT_S = 0.3
        sim.configure(fault="stall", stall_s=5)
    else:
        sim.configure(fault="error_midstream", fault_after_tokens=3)
    messages = [question_ask(bot, "How long do I have to ask for a refund?", visitor_id=f"v{n}")
                for n in range(CONCURRENT)]  # fmt: skip

    started = time.monotonic()
    events, every_event = answer_all(messages)

    assert time.monotonic() - started < 20
    for message in messages:
        message.refresh_from_db()
        done = [e for e in events[message.id] if e["type"] == "chat.done"]
        assert len(done) == 1
        assert done[0]["status"] == message.status == expected_status
        assert done[0]["text"] == message.text and message.text
        if expected_status == "retrieval_only":
            assert "30 days" in message.text, "the visitor still gets the relevant passage"
    errors = [e for e in every_event if e["type"] == "chat.error"]  # error frames name no message
    assert len(errors) == (CONCURRENT if expect_error else 0)
    assert all(e["code"] == "answer_failed" and e["retryable"] for e in errors)


def test_the_circuit_opens_after_consecutive_failures_answers_without_asking_then_half_opens(sim, bot, settings,
                                                                                           client):  # fmt: skip
    settings.TGI_CIRCUIT_FAILURES = 3
    # Long enough for 20 answers from the documentation (each embeds its candidate pieces) on a busy machine.
    settings.TGI_CIRCUIT_COOLDOWN_S = 8
    sim.configure(fault="generation_424")

    for n in range(3):
        answer_all([question_ask(bot, "Refund?", visitor_id=f"fail-{n}")])
    assert len(sim.generation_requests()) == 3
    assert client.get("/healthz").json()["tgi_circuit"] == "open"

    # While open: straight to retrieval-only, no request at all, even for 20 answers at once.
    open_messages = [question_ask(bot, "Refund?", visitor_id=f"open-{n}") for n in range(CONCURRENT)]
    answer_all(open_messages)
    assert len(sim.generation_requests()) == 3
    for message in open_messages:
        message.refresh_from_db()
        assert (message.status, message.finish_reason) == ("retrieval_only", "circuit_open")

    # After the cool-down, half-open: one probe; it fails, so the circuit opens again without more requests.
    time.sleep(8.1)
    assert client.get("/healthz").json()["tgi_circuit"] == "half_open"
    answer_all([question_ask(bot, "Refund?", visitor_id=f"probe-{n}") for n in range(3)])
    assert len(sim.generation_requests()) == 4
    assert circuit.circuit_state(endpoint=sim.url) == "open"

    # The model server is back: the next probe succeeds and closes the circuit.
    sim.configure(fault=None)
    time.sleep(8.1)
    message = question_ask(bot, "Refund?", visitor_id="recovered")
    answer_all([message])
    message.refresh_from_db()
    assert message.status == "complete"
    assert client.get("/healthz").json()["tgi_circuit"] == "closed"
