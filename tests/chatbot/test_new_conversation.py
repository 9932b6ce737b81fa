"""The widget's "New conversation" over the chat websocket (docs/protocol.md, `new_conversation`): through the real
ASGI application, Redis channel layer and database. No worker runs here: answers are queued, and the worker's
events are sent to the groups by the test."""

import asyncio
import itertools

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chatbot.answers.stops import answer_stop_requested
from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.chat import session
from chatbot.chat.identity import identity_hash
from chatbot.chat.staff import conversation_take_over
from chatbot.chat.visitors import visitor_token_read
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Conversation, Message, WebhookDelivery
from chatbot.realtime.protocol import conversation_group, token_event
from chatbot.webhooks.subscriptions import subscription_create
from tests.rate_windows import clear_of_window_end

pytestmark = pytest.mark.django_db(transaction=True)

ALLOWED_ORIGIN = "https://www.acme.test"
_addresses = itertools.count(1)


@pytest.fixture
def acme(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=[ALLOWED_ORIGIN], greeting="Hello from Acme")


async def _ready(bot, token=None, **hello) -> tuple[WebsocketCommunicator, dict]:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{bot.public_id}/",
        headers=[(b"host", b"parley.test"), (b"origin", ALLOWED_ORIGIN.encode())],
    )
    # Each test visitor comes from its own address, so per-address limits do not leak between tests.
    communicator.scope["client"] = (f"10.15.{next(_addresses) // 250}.{next(_addresses) % 250}", 50000)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(
        {"type": "hello", "protocol": 1, "visitor_token": token, "page_url": "https://www.acme.test/pricing", **hello}
    )
    ready = await communicator.receive_json_from(timeout=5)
    assert ready["type"] == "ready"
    return communicator, ready


async def _ask(communicator, text: str, client_id: str) -> dict:
    await communicator.send_json_to({"type": "message", "text": text, "client_id": client_id})
    ack = await communicator.receive_json_from(timeout=5)
    assert ack["type"] == "ack"
    return ack


async def _answered(conversation_id: str, text: str = "We ship to Norway.") -> None:
    """The queued answer "finishes", as the worker would leave it."""
    await database_sync_to_async(Message.objects.filter(conversation_id=conversation_id, status="streaming").update)(
        status="complete", text=text
    )


async def _start_over(communicator) -> dict:
    await communicator.send_json_to({"type": "new_conversation"})
    return await communicator.receive_json_from(timeout=5)


@database_sync_to_async
def _messages(conversation_id: str) -> list[tuple[str, str]]:
    return list(Message.objects.filter(conversation_id=conversation_id).order_by("id").values_list("role", "text"))


@database_sync_to_async
def _conversation(conversation_id: str) -> Conversation:
    return Conversation.objects.get(id=conversation_id)


async def test_it_starts_a_new_conversation_for_the_same_visitor_and_keeps_the_old_one_with_its_messages(acme):
    communicator, first = await _ready(acme)
    await _ask(communicator, "Do you ship to Norway?", "c1")
    await _answered(first["conversation_id"])

    ready = await _start_over(communicator)

    assert ready["type"] == "ready"
    assert ready["conversation_id"] != first["conversation_id"]
    assert ready["messages"] == []
    assert ready["bot"] == {"name": "Acme Support", "greeting": "Hello from Acme"}
    visitor_id = visitor_token_read(token=first["visitor_token"], bot_public_id=acme.public_id)
    assert visitor_token_read(token=ready["visitor_token"], bot_public_id=acme.public_id) == visitor_id
    new = await _conversation(ready["conversation_id"])
    assert (new.visitor_id, new.page_url) == (visitor_id, "https://www.acme.test/pricing")
    assert await _messages(first["conversation_id"]) == [
        ("visitor", "Do you ship to Norway?"),
        ("bot", "We ship to Norway."),
    ]

    ack = await _ask(communicator, "How long does delivery take?", "c2")

    assert ack["answer"] is True
    assert await _messages(ready["conversation_id"]) == [("visitor", "How long does delivery take?"), ("bot", "")]
    assert len(await _messages(first["conversation_id"])) == 2
    await communicator.disconnect()


async def test_a_reload_resumes_the_new_conversation_not_the_one_left(acme):
    communicator, first = await _ready(acme)
    await _ask(communicator, "Do you ship to Norway?", "c1")
    await _answered(first["conversation_id"])
    ready = await _start_over(communicator)
    await _ask(communicator, "And to Iceland?", "c2")
    await communicator.disconnect()
    # Staff writing in the old conversation later makes it the one with the latest message: still left.
    await database_sync_to_async(Conversation.objects.filter(id=first["conversation_id"]).update)(
        last_message_at=timezone.now()
    )

    reloaded, resumed = await _ready(acme, token=ready["visitor_token"])

    assert resumed["conversation_id"] == ready["conversation_id"]
    assert [(m["role"], m["text"]) for m in resumed["messages"]][:1] == [("visitor", "And to Iceland?")]
    assert "Do you ship to Norway?" not in [m["text"] for m in resumed["messages"]]
    await reloaded.disconnect()


async def test_starting_over_in_a_conversation_with_nothing_in_it_keeps_that_one(acme):
    communicator, first = await _ready(acme)

    ready = await _start_over(communicator)

    assert ready["type"] == "ready" and ready["conversation_id"] == first["conversation_id"]
    assert await database_sync_to_async(Conversation.objects.filter(bot=acme).count)() == 1
    await communicator.disconnect()


async def test_the_answer_streaming_in_the_old_conversation_is_stopped_and_none_of_its_events_follow(acme):
    communicator, first = await _ready(acme)
    await _ask(communicator, "Tell me everything", "c1")
    streaming = await database_sync_to_async(Message.objects.get)(conversation_id=first["conversation_id"], role="bot")

    ready = await _start_over(communicator)

    assert await database_sync_to_async(answer_stop_requested)(message_id=streaming.id)
    layer = get_channel_layer()
    # The old answer's events: sent to its conversation after the switch, or already on their way to this socket.
    await layer.group_send(
        conversation_group(first["conversation_id"]), token_event(message_id=streaming.id, text="late")
    )
    await layer.group_send(conversation_group(ready["conversation_id"]), token_event(message_id=streaming.id, text="x"))
    assert await communicator.receive_nothing(timeout=0.3)
    # The new conversation's answers do reach it, and it takes a message at once (nothing streams in it).
    ack = await _ask(communicator, "Shipping to Norway?", "c2")
    answer = await database_sync_to_async(Message.objects.get)(conversation_id=ready["conversation_id"], role="bot")
    await layer.group_send(conversation_group(ready["conversation_id"]), token_event(message_id=answer.id, text="Yes"))
    assert await communicator.receive_json_from(timeout=5) == {"type": "token", "message_id": answer.id, "text": "Yes"}
    assert ack["answer"] is True
    await communicator.disconnect()


async def test_a_takeover_and_a_handoff_request_stay_with_the_old_conversation(acme):
    staff = await database_sync_to_async(staff_member_save)(username="ada", role="admin", password="pw-ada-12345")
    communicator, first = await _ready(acme)
    await _ask(communicator, "Can I talk to a person?", "c1")
    await communicator.receive_json_from(timeout=5)  # handoff
    old = await _conversation(first["conversation_id"])
    await database_sync_to_async(conversation_take_over)(conversation=old, user=staff.user)
    await communicator.receive_json_from(timeout=5)  # staff_joined
    # A staff member's live view of the old conversation listens on its group.
    layer = get_channel_layer()
    live_view = await layer.new_channel()
    await layer.group_add(conversation_group(old.id), live_view)

    ready = await _start_over(communicator)
    ack = await _ask(communicator, "Where is my parcel?", "c2")

    new = await _conversation(ready["conversation_id"])
    assert (new.taken_over_by_id, new.handoff_requested_at, new.lead_form_reason) == (None, None, "")
    assert ack["answer"] is True  # the bot answers the new conversation
    assert await _messages(new.id) == [("visitor", "Where is my parcel?"), ("bot", "")]
    old = await _conversation(old.id)
    assert old.taken_over_by_id == staff.user.id and old.handoff_requested_at is not None
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(live_view), timeout=0.3)
    await communicator.disconnect()


async def test_the_new_conversation_is_announced_to_webhooks_as_started(acme):
    await database_sync_to_async(subscription_create)(
        bot=acme, url="http://127.0.0.1:9/hooks", events=["conversation.started"], allow_private_addresses=True
    )
    communicator, first = await _ready(acme)
    await _ask(communicator, "Do you ship to Norway?", "c1")
    await _answered(first["conversation_id"])

    ready = await _start_over(communicator)

    started = await database_sync_to_async(list)(
        WebhookDelivery.objects.filter(event="conversation.started").order_by("id").values_list("payload", flat=True)
    )
    assert [payload["conversation"]["id"] for payload in started] == [
        first["conversation_id"],
        ready["conversation_id"],
    ]
    await communicator.disconnect()


async def test_a_verified_visitor_stays_verified_and_their_other_devices_find_the_new_conversation(acme):
    ada = {"user_id": "user-42", "user_hash": identity_hash(secret=acme.identity_secret, user_id="user-42")}
    laptop, first = await _ready(acme, identity={**ada, "name": "Ada Lovelace", "email": "ada@example.com"})
    await _ask(laptop, "Do you ship to Norway?", "c1")
    await _answered(first["conversation_id"])

    ready = await _start_over(laptop)
    phone, on_phone = await _ready(acme, identity=ada)

    assert ready["identity"] == "verified"
    assert ready["visitor"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    new = await _conversation(ready["conversation_id"])
    assert (new.visitor_verified, new.visitor_name, new.visitor_email) == (True, "Ada Lovelace", "ada@example.com")
    assert on_phone["conversation_id"] == ready["conversation_id"] != first["conversation_id"]
    await laptop.disconnect()
    await phone.disconnect()


async def test_new_conversation_before_hello_is_a_bad_frame(acme):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{acme.public_id}/",
        headers=[(b"host", b"parley.test"), (b"origin", ALLOWED_ORIGIN.encode())],
    )
    communicator.scope["client"] = ("10.15.250.1", 50000)
    assert (await communicator.connect())[0]

    error = await _start_over(communicator)

    assert error["type"] == "error" and error["code"] == "bad_frame" and "hello" in error["message"]
    assert await database_sync_to_async(Conversation.objects.count)() == 0
    await communicator.disconnect()


async def test_a_visitor_starting_over_again_and_again_is_rate_limited(acme, monkeypatch):
    monkeypatch.setattr(session, "NEW_CONVERSATIONS_PER_MINUTE", 2)
    await clear_of_window_end(60)
    communicator, ready = await _ready(acme)
    for n in range(2):
        await _ask(communicator, f"question {n}", f"c{n}")
        await _answered(ready["conversation_id"])
        ready = await _start_over(communicator)
        assert ready["type"] == "ready"
    await _ask(communicator, "question 2", "c2")

    error = await _start_over(communicator)

    assert error["type"] == "error" and error["code"] == "rate_limited" and error["retryable"] is True
    assert await database_sync_to_async(Conversation.objects.filter(bot=acme).count)() == 3
    await communicator.disconnect()
