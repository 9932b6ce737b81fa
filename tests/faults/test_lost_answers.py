"""Answers nobody will finish: the worker died with no visitor watching, or no worker ever started the task. The
beat's sweep (chatbot.answers.watchdog.lost_answers_finalise) ends each one as the chat consumer's watchdog does, under
the same lock, so no answer stays `streaming` and the visitor who comes back can ask again."""

import asyncio
import datetime
import signal
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from chatbot.answers import watchdog
from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.celery import app as celery_app
from chatbot.models import Message
from chatbot.realtime import keys as redis_keys
from chatbot.realtime.connections import sync_client
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.tgi_simulator import TGISimulator
from tests.chatbot import GroupListener, question_ask, stop_requests_forget
from tests.faults import ORIGIN, Visitor

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = " ".join(f"word{n}" for n in range(200))


def answer_records_forget() -> None:
    """Delete every progress record and finalise lock: they are keyed by message id, and ids restart with every
    test database."""
    client = sync_client()
    for key in client.scan_iter(match="parley:answer:*", count=1000):
        client.delete(key)


@pytest.fixture(autouse=True)
def clean_redis():
    answer_records_forget()
    stop_requests_forget()
    yield
    answer_records_forget()


@pytest.fixture
def bot(transactional_db):
    return bot_create(slug="acme", name="Acme", allowed_origins=[ORIGIN])


def record_write(message_id: int, *, silent_for_s: float, text: str) -> None:
    """The progress record a worker leaves, last beating `silent_for_s` ago."""
    sync_client().hset(redis_keys.answer_progress_key(message_id), "beat", str(time.time() - silent_for_s))
    sync_client().set(redis_keys.answer_progress_text_key(message_id), text)


async def chat_socket_ready(bot, *, ip: str) -> tuple[WebsocketCommunicator, dict]:
    """A widget's socket in this process, past hello: (communicator, the `ready` frame)."""
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/{bot.public_id}/", headers=[(b"host", b"parley.test"), (b"origin", ORIGIN.encode())]
    )
    communicator.scope["client"] = (ip, 50000)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "hello", "protocol": 1})
    return communicator, await communicator.receive_json_from(timeout=5)


def created_ago(message: Message, seconds: float) -> None:
    Message.objects.filter(id=message.id).update(created_at=timezone.now() - datetime.timedelta(seconds=seconds))


def test_the_sweep_ends_an_answer_whose_worker_stopped_beating_with_its_text_and_tells_the_conversation(bot):
    message = question_ask(bot, "Tell me a long story")
    record_write(message.id, silent_for_s=settings.PARLEY_WORKER_LOST_AFTER_S + 1, text="Once upon a")

    with GroupListener(message.conversation.group_name) as listener:
        assert watchdog.lost_answers_finalise() == [message.id]
        listener.wait_for("chat.error")
        events = listener.settle()

    message.refresh_from_db()
    assert (message.status, message.error_code, message.text) == (Message.Status.ERROR, "worker_lost", "Once upon a")
    assert message.finish_reason == "worker_lost" and message.finished_at is not None
    assert [event["type"] for event in events] == ["chat.done", "chat.error"]
    assert (events[0]["status"], events[0]["text"]) == ("error", "Once upon a")
    assert (events[1]["code"], events[1]["retryable"]) == ("answer_failed", True)
    assert not sync_client().exists(
        redis_keys.answer_progress_key(message.id), redis_keys.answer_progress_text_key(message.id)
    )


def test_the_sweep_ends_an_answer_no_worker_started_once_the_wait_is_over(bot):
    message = question_ask(bot, "Hello?")
    created_ago(message, settings.PARLEY_ANSWER_NOT_STARTED_AFTER_S + 1)

    with GroupListener(message.conversation.group_name) as listener:
        assert watchdog.lost_answers_finalise(recheck_after_s=0) == [message.id]
        listener.wait_for("chat.error")

    message.refresh_from_db()
    assert (message.status, message.finish_reason, message.text) == (Message.Status.ERROR, "not_started", "")
    assert [event["type"] for event in listener.events] == ["chat.done", "chat.error"]


def test_the_sweep_leaves_beating_and_freshly_queued_answers_alone(bot):
    beating = question_ask(bot, "First", visitor_id="visitor-1")
    record_write(beating.id, silent_for_s=0.2, text="Still going")
    created_ago(beating, 600)  # a long answer, but its worker is alive
    queued = question_ask(bot, "Second", visitor_id="visitor-2")

    assert watchdog.lost_answers_finalise(recheck_after_s=0) == []

    assert set(Message.objects.filter(id__in=[beating.id, queued.id]).values_list("status", flat=True)) == {
        Message.Status.STREAMING
    }


def test_the_sweep_leaves_an_answer_to_a_consumer_that_is_already_ending_it(bot):
    message = question_ask(bot, "Tell me a long story")
    record_write(message.id, silent_for_s=settings.PARLEY_WORKER_LOST_AFTER_S + 1, text="Once upon a")
    sync_client().set(redis_keys.answer_finalised_key(message.id), "1")  # a consumer's watchdog took the lock

    with GroupListener(message.conversation.group_name) as listener:
        assert watchdog.lost_answers_finalise() == []
        events = listener.settle(0.3)

    message.refresh_from_db()
    assert message.status == Message.Status.STREAMING and events == []


def test_the_sweep_gives_the_lock_back_when_it_cannot_save_so_the_next_round_ends_the_answer(bot, monkeypatch):
    message = question_ask(bot, "Tell me a long story")
    record_write(message.id, silent_for_s=settings.PARLEY_WORKER_LOST_AFTER_S + 1, text="Once upon a")

    def database_down(*args):
        raise ConnectionError("PostgreSQL is restarting")

    monkeypatch.setattr(watchdog, "_message_save_lost", database_down)
    with pytest.raises(ConnectionError):
        watchdog.lost_answers_finalise()
    monkeypatch.undo()

    assert watchdog.lost_answers_finalise() == [message.id]
    message.refresh_from_db()
    assert message.status == Message.Status.ERROR


def test_the_beat_schedule_runs_the_sweep_every_few_seconds():
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith("lost_answers_finalise"))
    assert entry["schedule"] <= 10
    from chatbot.answers import tasks

    assert entry["task"] == tasks.lost_answers_finalise.name


async def test_a_watching_visitor_hears_of_an_answer_no_worker_ever_starts(bot, tmp_path):
    daphne = await asyncio.to_thread(
        start_daphne, log_path=tmp_path / "daphne.log", PARLEY_ANSWER_NOT_STARTED_AFTER_S="1"
    )
    visitor = Visitor(daphne.url, bot.public_id)
    try:
        await visitor.connect()
        ack = await visitor.ask("Is anyone there?", client_id="first")  # no worker runs: the task stays queued
        asked_at = time.monotonic()
        assert ack["answer"] is True
        done = await visitor.next("done", timeout_s=10)
        error = await visitor.next("error", timeout_s=2)
        assert time.monotonic() - asked_at < 5
    finally:
        await visitor.close()
        await asyncio.to_thread(daphne.stop)
    assert (done["status"], error["code"], error["retryable"]) == ("error", "answer_failed", True)
    message = await Message.objects.aget(id=done["message_id"])
    assert (message.status, message.finish_reason) == (Message.Status.ERROR, "not_started")


async def test_a_watching_visitor_gets_the_end_of_an_answer_whose_done_never_reached_it(bot, tmp_path):
    daphne = await asyncio.to_thread(start_daphne, log_path=tmp_path / "daphne.log")
    visitor = Visitor(daphne.url, bot.public_id)
    try:
        await visitor.connect()
        await visitor.ask("Do you ship abroad?", client_id="first")
        reply = await Message.objects.aget(role=Message.Role.BOT, in_reply_to__client_id="first")
        # A worker saved the answer, but its `done` was lost on the way (a Redis restart, a dropped subscription).
        await Message.objects.filter(id=reply.id).aupdate(status=Message.Status.COMPLETE, text="We ship to the EU.")
        done = await visitor.next("done", timeout_s=10)
    finally:
        await visitor.close()
        await asyncio.to_thread(daphne.stop)
    assert (done["message_id"], done["status"], done["text"]) == (reply.id, "complete", "We ship to the EU.")


async def test_a_watching_socket_hears_the_end_even_when_it_has_dropped_out_of_the_conversations_group(bot):
    communicator, ready = await chat_socket_ready(bot, ip="10.77.0.1")
    await communicator.send_json_to({"type": "message", "text": "Do you ship abroad?", "client_id": "first"})
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "ack":
        pass
    # Its subscription to the group is gone (channels_redis's pub/sub layer: a dropped connection, a race), so no
    # group event reaches it any more; the answer is saved meanwhile.
    group = f"conversation.{ready['conversation_id']}"
    layer = get_channel_layer()
    for channel in list(layer._get_layer().groups.get(layer._get_layer()._get_group_channel_name(group), ())):
        await layer.group_discard(group, channel)
    reply = await Message.objects.aget(role=Message.Role.BOT, in_reply_to_id=frame["message_id"])
    await Message.objects.filter(id=reply.id).aupdate(status=Message.Status.COMPLETE, text="We ship to the EU.")

    while (frame := await communicator.receive_json_from(timeout=10))["type"] != "done":
        pass
    await communicator.disconnect()
    assert (frame["message_id"], frame["text"]) == (reply.id, "We ship to the EU.")


async def test_a_watch_that_finds_the_worker_silent_but_the_answer_saved_sends_the_saved_end(bot):
    """The worker stopped beating (killed), but the answer was saved meanwhile (by a worker that finished after all):
    nothing is left to finalise, and the visitor must still get the end instead of the watch just stopping."""
    reply = await sync_to_async(question_ask)(bot, "Do you ship abroad?")
    await sync_to_async(record_write)(reply.id, silent_for_s=settings.PARLEY_WORKER_LOST_AFTER_S + 1, text="We ship")
    await Message.objects.filter(id=reply.id).aupdate(status=Message.Status.COMPLETE, text="We ship to the EU.")
    sent: list[dict] = []

    async def send_ended(event: dict) -> None:
        sent.append(event)

    await asyncio.wait_for(
        watchdog.answer_watch(
            message_id=reply.id, group="conversation.x", channel_layer=get_channel_layer(), send_ended=send_ended
        ),
        timeout=10,
    )
    assert [(event["message_id"], event["status"], event["text"]) for event in sent] == [
        (reply.id, "complete", "We ship to the EU.")
    ]


async def test_a_late_done_of_an_earlier_answer_does_not_leave_the_current_one_unwatched(bot):
    """One way an answer could end without the visitor hearing (a soak lost 1 of 3,559 so: saved complete, no `done`
    seen): a late `done` of the visitor's previous answer stopped the watch of the one streaming, whose own `done`
    then went missing with nothing left to send it again."""
    communicator, ready = await chat_socket_ready(bot, ip="10.77.0.2")
    group = f"conversation.{ready['conversation_id']}"
    layer = get_channel_layer()

    async def ask(client_id: str) -> Message:
        await communicator.send_json_to({"type": "message", "text": "Do you ship abroad?", "client_id": client_id})
        while (frame := await communicator.receive_json_from(timeout=5))["type"] != "ack":
            pass
        return await Message.objects.aget(role=Message.Role.BOT, in_reply_to_id=frame["message_id"])

    first = await ask("first")
    await Message.objects.filter(id=first.id).aupdate(status=Message.Status.COMPLETE, text="We ship to the EU.")
    first_done = {"type": "chat.done", "message_id": first.id, "status": "complete", "citations": [], "text": "x"}
    await layer.group_send(group, first_done)
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "done":
        pass
    second = await ask("second")
    [channel] = layer._get_layer().groups.get(layer._get_layer()._get_group_channel_name(group), ())
    # The second answer's own `done` never reaches the socket (its group subscription dropped) once it is saved...
    await layer.group_discard(group, channel)
    # ...and the first answer's `done` comes once more, late, through the socket's own channel as the watchdog
    # resends it: the socket has shown it already and says nothing.
    await layer.send(channel, first_done)
    await Message.objects.filter(id=second.id).aupdate(status=Message.Status.COMPLETE, text="And to Switzerland.")

    while (frame := await communicator.receive_json_from(timeout=10))["type"] != "done":
        pass
    await communicator.disconnect()
    assert (frame["message_id"], frame["text"]) == (second.id, "And to Switzerland.")


async def test_a_worker_killed_mid_answer_with_no_one_watching_is_ended_by_the_sweep_and_the_visitor_can_ask_again(
    bot, tmp_path
):
    with TGISimulator() as sim:
        sim.configure(tokens_per_s=20, script_text=WORDS)
        daphne = await asyncio.to_thread(start_daphne, log_path=tmp_path / "daphne.log")
        worker = await asyncio.to_thread(
            start_celery_worker, log_path=tmp_path / "worker.log", concurrency=4, TGI_URL=sim.url
        )
        new_worker = None
        visitor = Visitor(daphne.url, bot.public_id)
        try:
            await visitor.connect()
            await visitor.ask("Tell me a long story", client_id="first")
            first = await visitor.next("token", timeout_s=20)
            await asyncio.sleep(1.0)  # more than one checkpoint
            await visitor.close()  # the visitor leaves: no consumer watches the answer any more
            await asyncio.sleep(0.5)

            worker.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(worker.process.wait, 5)
            await asyncio.sleep(settings.PARLEY_WORKER_LOST_AFTER_S + 1)
            message = await Message.objects.aget(id=first["message_id"])
            assert message.status == Message.Status.STREAMING, "nothing but the sweep may end it"

            sim.configure(tokens_per_s=None, script_text="Back again.")
            new_worker = await asyncio.to_thread(
                start_celery_worker, log_path=tmp_path / "worker2.log", concurrency=4, TGI_URL=sim.url
            )
            # What beat sends, by the schedule's own task name.
            entry = settings.CELERY_BEAT_SCHEDULE["finalise-lost-answers"]
            await sync_to_async(celery_app.send_task)(entry["task"])
            deadline = time.monotonic() + 15
            while message.status == Message.Status.STREAMING and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                await message.arefresh_from_db()
            assert (message.status, message.error_code) == (Message.Status.ERROR, "worker_lost")
            assert message.text.startswith("word0 word1"), "the checkpointed text is kept"

            ready = await visitor.connect()
            shown = next(m for m in ready["messages"] if m["id"] == message.id)
            assert (shown["status"], shown["text"]) == ("error", message.text)
            await visitor.ask("Are you back?", client_id="second")
            again = await visitor.next("done", timeout_s=20, text="Back again.")
            assert again["status"] == "complete"
        finally:
            await visitor.close()
            for process in (new_worker, worker, daphne):
                if process is not None:
                    await asyncio.to_thread(process.stop)
