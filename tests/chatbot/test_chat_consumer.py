"""The chat websocket protocol (docs/protocol.md), through the real ASGI application, Redis channel layer and
database. No worker runs here: answers are queued, and the worker's events are sent to the group by the test."""

import asyncio
import itertools
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from chatbot.answers.stops import answer_stop_requested
from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.chat.visitors import visitor_token_issue
from chatbot.models import Conversation, Message
from chatbot.realtime.connections import sync_client
from tests.rate_windows import clear_of_window_end

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = "https://www.acme.test"
_addresses = itertools.count(1)


@pytest.fixture
def acme(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=[ALLOWED_ORIGIN], greeting="Hello from Acme")


def _communicator(bot, *, origin: str | None = ALLOWED_ORIGIN, host: str = "parley.test", ip: str | None = None):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, f"/ws/chat/{bot.public_id}/", headers=headers)
    # Each test visitor comes from its own address, so per-address limits do not leak between tests.
    communicator.scope["client"] = (ip or f"10.1.{next(_addresses) // 250}.{next(_addresses) % 250}", 50000)
    return communicator


async def _connected(bot, **kwargs) -> WebsocketCommunicator:
    communicator = _communicator(bot, **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _hello(communicator, token=None) -> dict:
    await communicator.send_json_to(
        {
            "type": "hello",
            "protocol": 1,
            "visitor_token": token,
            "page_url": "https://www.acme.test/pricing",
            "referrer": "https://search.test/",
        }
    )
    return await communicator.receive_json_from(timeout=5)


async def _ready(bot, token=None, **kwargs):
    communicator = await _connected(bot, **kwargs)
    ready = await _hello(communicator, token)
    assert ready["type"] == "ready"
    return communicator, ready


# --- who may connect ---


async def _refused(communicator) -> tuple[dict, int]:
    """A refused socket says why in an error frame, then closes with a 44xx code; it never reaches hello."""
    connected, _ = await communicator.connect()
    assert connected
    error = await communicator.receive_json_from(timeout=5)
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    # As a browser would: answer the close, so the consumer's instance ends (not left to the loop's teardown).
    await communicator.disconnect()
    return error, closed["code"]


async def test_it_refuses_a_page_on_a_site_the_bot_does_not_allow(acme):
    error, code = await _refused(_communicator(acme, origin="https://evil.test"))
    assert error["code"] == "forbidden"
    assert code == 4403


async def test_it_refuses_a_socket_without_an_origin(acme):
    error, code = await _refused(_communicator(acme, origin=None))
    assert (error["code"], code) == ("forbidden", 4403)


async def test_it_accepts_parleys_own_chat_page_and_the_bots_allowed_sites(acme):
    for origin, host in [(ALLOWED_ORIGIN, "parley.test"), ("https://parley.test", "parley.test")]:
        communicator = _communicator(acme, origin=origin, host=host)
        connected, _ = await communicator.connect()
        assert connected, origin
        await communicator.disconnect()


async def test_it_refuses_a_bot_that_does_not_exist(acme):
    acme.public_id = "no-such-bot"
    error, code = await _refused(_communicator(acme))
    assert (error["code"], code) == ("not_found", 4404)


async def test_it_limits_open_sockets_per_address(acme, settings):
    settings.CHAT_CONNECTIONS_PER_IP = 3
    sockets = [await _connected(acme, ip="10.9.9.9") for _ in range(3)]
    error, code = await _refused(_communicator(acme, ip="10.9.9.9"))
    assert (error["code"], code) == ("rate_limited", 4429)
    await sockets[0].disconnect()
    again = await _connected(acme, ip="10.9.9.9")
    for communicator in [*sockets[1:], again]:
        await communicator.disconnect()


# --- hello, tokens and resuming ---


async def test_hello_starts_a_conversation_and_issues_a_visitor_token(acme):
    communicator, ready = await _ready(acme)

    assert ready["protocol"] == 1
    assert ready["visitor_token"]
    assert ready["messages"] == []
    assert ready["bot"] == {"name": "Acme Support", "greeting": "Hello from Acme"}
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    assert conversation.page_url == "https://www.acme.test/pricing"
    assert conversation.referrer == "https://search.test/"
    await communicator.disconnect()


async def test_a_visitor_who_comes_back_with_the_token_resumes_the_conversation(acme):
    first, ready = await _ready(acme)
    await first.send_json_to({"type": "message", "text": "Do you ship to Norway?", "client_id": "c1"})
    ack = await first.receive_json_from(timeout=5)
    await first.disconnect()

    second, resumed = await _ready(acme, token=ready["visitor_token"])

    assert resumed["conversation_id"] == ready["conversation_id"]
    assert [(m["id"], m["role"], m["text"]) for m in resumed["messages"][:1]] == [
        (ack["message_id"], "visitor", "Do you ship to Norway?")
    ]
    assert resumed["messages"][1]["role"] == "bot" and resumed["messages"][1]["status"] == "streaming"
    await second.disconnect()


@pytest.mark.parametrize("token", ["forged.token.value", "", 42])
async def test_a_forged_or_malformed_token_gets_a_new_visitor_not_someone_elses_conversation(acme, token):
    owner, ready = await _ready(acme)
    await owner.disconnect()

    stranger, other = await _ready(acme, token=token)

    assert other["conversation_id"] != ready["conversation_id"]
    assert other["messages"] == []
    await stranger.disconnect()


async def test_a_token_issued_for_another_bot_is_not_accepted(acme):
    other_bot = await database_sync_to_async(bot_create)(slug="other", name="Other")
    token, _ = visitor_token_issue(bot_public_id=other_bot.public_id)
    communicator, ready = await _ready(acme, token=token)
    assert ready["visitor_token"] != token
    await communicator.disconnect()


# --- bad input: a clear error frame, and the socket stays usable ---


async def _still_alive(communicator):
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_frame"),
        ("[1, 2, 3]", "bad_frame"),
        ('{"type": 7}', "bad_frame"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"type": "message"}', "bad_frame"),
        ('{"type": "message", "text": "   "}', "bad_frame"),
        ('{"type": "message", "text": "hi", "client_id": {"x": 1}}', "bad_frame"),
        ('{"type": "feedback", "message_id": "1", "value": "meh"}', "bad_frame"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_lives_on(acme, frame, code):
    communicator, _ = await _ready(acme)

    await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error" and error["code"] == code and error["message"]
    await _still_alive(communicator)
    await communicator.disconnect()


async def test_a_binary_frame_is_refused_with_an_error(acme):
    communicator, _ = await _ready(acme)
    await communicator.send_to(bytes_data=b"\x00\x01\x02")
    error = await communicator.receive_json_from(timeout=5)
    assert error["code"] == "bad_frame"
    await _still_alive(communicator)
    await communicator.disconnect()


async def test_frames_before_hello_are_refused(acme):
    communicator = await _connected(acme)
    await communicator.send_json_to({"type": "message", "text": "hi"})
    error = await communicator.receive_json_from(timeout=5)
    assert error["code"] == "bad_frame" and "hello" in error["message"]
    await communicator.disconnect()


async def test_an_oversized_message_is_refused_and_nothing_is_saved(acme):
    communicator, ready = await _ready(acme)

    await communicator.send_json_to({"type": "message", "text": "x" * 4001})
    error = await communicator.receive_json_from(timeout=5)
    await communicator.send_to(text_data=json.dumps({"type": "message", "text": "y" * 100_000}))
    huge = await communicator.receive_json_from(timeout=5)

    assert error["code"] == "too_long" and "4000" in error["message"]
    assert huge["code"] == "too_long"
    assert await database_sync_to_async(Message.objects.filter(conversation_id=ready["conversation_id"]).count)() == 0
    await _still_alive(communicator)
    await communicator.disconnect()


# --- messages ---


async def test_a_message_is_saved_before_it_is_acknowledged_and_an_answer_is_queued(acme):
    communicator, ready = await _ready(acme)

    await communicator.send_json_to({"type": "message", "text": "What are your opening hours?", "client_id": "c-1"})
    ack = await communicator.receive_json_from(timeout=5)

    assert ack == {"type": "ack", "client_id": "c-1", "message_id": ack["message_id"], "answer": True}
    messages = await database_sync_to_async(list)(
        Message.objects.filter(conversation_id=ready["conversation_id"]).values_list("role", "text", "status")
    )
    assert messages == [("visitor", "What are your opening hours?", "complete"), ("bot", "", "streaming")]
    await communicator.disconnect()


async def test_a_message_resent_after_a_reconnect_is_not_saved_twice(acme):
    communicator, ready = await _ready(acme)
    frame = {"type": "message", "text": "Hello?", "client_id": "same-id"}
    await communicator.send_json_to(frame)
    first = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to(frame)
    second = await communicator.receive_json_from(timeout=5)

    assert first["message_id"] == second["message_id"]
    count = await database_sync_to_async(
        Message.objects.filter(conversation_id=ready["conversation_id"], role="visitor").count
    )()
    assert count == 1
    await communicator.disconnect()


async def test_a_message_while_an_answer_is_streaming_is_refused_as_busy(acme):
    communicator, _ = await _ready(acme)
    await communicator.send_json_to({"type": "message", "text": "First question", "client_id": "a"})
    await communicator.receive_json_from(timeout=5)

    await communicator.send_json_to({"type": "message", "text": "Second question", "client_id": "b"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["code"] == "busy" and error["retryable"] is True
    await communicator.disconnect()


async def test_a_visitor_over_the_rate_limit_gets_a_friendly_message(acme, settings):
    settings.CHAT_MESSAGES_PER_MINUTE_PER_VISITOR = 2
    await clear_of_window_end(60)
    communicator, ready = await _ready(acme)
    conversation_id = ready["conversation_id"]
    for n in range(2):
        await communicator.send_json_to({"type": "message", "text": f"question {n}", "client_id": f"r{n}"})
        await communicator.receive_json_from(timeout=5)
        # let the queued answer "finish" so the next message is not refused as busy
        await database_sync_to_async(
            Message.objects.filter(conversation_id=conversation_id, status="streaming").update
        )(status="complete")

    await communicator.send_json_to({"type": "message", "text": "one more", "client_id": "r3"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["code"] == "rate_limited"
    assert "wait a moment" in error["message"]
    count = await database_sync_to_async(
        Message.objects.filter(conversation_id=conversation_id, role="visitor").count
    )()
    assert count == 2
    await communicator.disconnect()


# --- stop, feedback, handoff ---


async def test_stop_asks_the_worker_to_end_the_streaming_answer(acme):
    communicator, ready = await _ready(acme)
    await communicator.send_json_to({"type": "message", "text": "Tell me everything", "client_id": "s"})
    await communicator.receive_json_from(timeout=5)
    streaming = await database_sync_to_async(Message.objects.get)(conversation_id=ready["conversation_id"], role="bot")

    await communicator.send_json_to({"type": "stop"})
    await _still_alive(communicator)

    assert await database_sync_to_async(answer_stop_requested)(message_id=streaming.id)
    await communicator.disconnect()


async def test_feedback_is_saved_on_the_answer_and_only_in_ones_own_conversation(acme):
    communicator, ready = await _ready(acme)
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    answer = await database_sync_to_async(Message.objects.create)(conversation=conversation, role="bot", text="Hi")
    stranger, _ = await _ready(acme)

    await communicator.send_json_to({"type": "feedback", "message_id": answer.id, "value": "down"})
    await _still_alive(communicator)
    await stranger.send_json_to({"type": "feedback", "message_id": answer.id, "value": "up"})
    error = await stranger.receive_json_from(timeout=5)

    await database_sync_to_async(answer.refresh_from_db)()
    assert answer.feedback == "down"
    assert error["code"] == "not_found"
    await communicator.disconnect()
    await stranger.disconnect()


async def test_asking_for_a_person_is_recorded_and_answered(acme):
    communicator, ready = await _ready(acme)
    await communicator.send_json_to({"type": "handoff_request"})
    reply = await communicator.receive_json_from(timeout=5)

    assert reply["type"] == "handoff" and reply["status"] in ("requested", "unavailable") and reply["message"]
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    assert conversation.handoff_requested_at is not None
    await communicator.disconnect()


# --- relaying the worker's events ---


async def test_it_relays_the_answer_events_of_its_conversation_in_order(acme):
    communicator, ready = await _ready(acme)
    group = f"conversation.{ready['conversation_id']}"
    layer = get_channel_layer()

    await layer.group_send(group, {"type": "chat.typing", "message_id": 7})
    for piece in ["Our ", "shop opens ", "at 9 [1]."]:
        await layer.group_send(group, {"type": "chat.token", "message_id": 7, "text": piece})
    citations = [{"n": 1, "title": "Opening hours", "url": "https://www.acme.test/hours"}]
    await layer.group_send(
        group,
        {
            "type": "chat.done",
            "message_id": 7,
            "status": "complete",
            "citations": citations,
            "text": "Our shop opens at 9 [1].",
        },
    )

    frames = [await communicator.receive_json_from(timeout=5) for _ in range(5)]
    assert frames[0] == {"type": "typing", "message_id": 7}
    assert [frame["text"] for frame in frames[1:4]] == ["Our ", "shop opens ", "at 9 [1]."]
    assert frames[4] == {
        "type": "done",
        "message_id": 7,
        "status": "complete",
        "citations": citations,
        "text": "Our shop opens at 9 [1].",
    }
    await communicator.disconnect()


async def test_a_visitor_never_receives_another_conversations_events(acme):
    mine, _ = await _ready(acme)
    theirs, other = await _ready(acme)

    await get_channel_layer().group_send(
        f"conversation.{other['conversation_id']}", {"type": "chat.token", "message_id": 1, "text": "secret"}
    )

    assert (await theirs.receive_json_from(timeout=5))["text"] == "secret"
    assert await mine.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


async def test_a_nul_character_anywhere_in_a_frame_is_refused_not_a_server_error(acme):
    communicator, _ = await _ready(acme)

    await communicator.send_json_to({"type": "message", "text": "hi", "client_id": "\u0000"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["code"] == "bad_frame" and "NUL" in error["message"]
    await _still_alive(communicator)
    await communicator.disconnect()


async def test_an_answers_end_reaches_the_socket_once_even_when_the_watchdog_resends_it(acme):
    communicator, ready = await _ready(acme)
    group = f"conversation.{ready['conversation_id']}"
    done = {"type": "chat.done", "message_id": 9, "status": "complete", "citations": [], "text": "Done."}

    await get_channel_layer().group_send(group, done)
    await get_channel_layer().group_send(group, done)
    await get_channel_layer().group_send(group, {**done, "message_id": 10, "text": "Next."})

    assert (await communicator.receive_json_from(timeout=5))["message_id"] == 9
    assert (await communicator.receive_json_from(timeout=5))["message_id"] == 10
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# --- what a closed socket leaves behind ---


def _subscriptions() -> set[str]:
    """The Redis pub/sub channels this installation's sockets listen on (each socket has its own)."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return {name.decode() for name in sync_client().pubsub_channels(f"{prefix}specific*")}


async def test_a_socket_closed_while_its_answer_streams_leaves_no_subscription_behind(acme):
    """Channels' dispatch loop leaves a socket's channel subscribed when the close and a queued event are picked up
    together (channels_redis issue 276): when Daphne fell behind, a visitor who left mid-answer kept a Redis
    subscription and a queue in Daphne for good."""
    before = await asyncio.to_thread(_subscriptions)
    for _ in range(5):
        communicator, ready = await _ready(acme)
        group = f"conversation.{ready['conversation_id']}"
        tokens = [(group, {"type": "chat.token", "message_id": 1, "text": f"w{n} "}) for n in range(300)]
        await get_channel_layer().group_send_many(tokens)
        await communicator.receive_json_from(timeout=5)  # the answer is streaming
        await communicator.disconnect()

    assert await asyncio.to_thread(_subscriptions) - before == set()
