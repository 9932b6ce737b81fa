"""Property: any sequence of frames leaves the chat consumer alive and the conversation consistent (Hypothesis)."""

import itertools
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.models import Bot, Message

ORIGIN = "https://www.acme.test"
_ips = itertools.count(1)

text = st.text(max_size=60)
scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | text
frame_types = st.sampled_from(["hello", "message", "stop", "feedback", "handoff_request", "ping", "lead_submit",
                               "lead_dismiss", "new_conversation", "bogus", ""])  # fmt: skip
frames = st.one_of(
    st.fixed_dictionaries({"type": frame_types}, optional={"text": scalar, "client_id": scalar, "message_id": scalar,
                                                         "value": scalar, "visitor_token": scalar,
                                                         "fields": st.dictionaries(text, scalar, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("message"), "text": st.text(min_size=1, max_size=40),
                           "client_id": st.text(max_size=8)}),
    st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                 max_leaves=6),
).map(lambda value: json.dumps(value))  # fmt: skip
raw = st.one_of(frames, st.text(min_size=1, max_size=80), st.binary(min_size=1, max_size=80))


@pytest.mark.django_db(transaction=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(raw, min_size=1, max_size=12))
async def test_any_sequence_of_frames_leaves_the_consumer_alive_and_the_conversation_consistent(sequence):
    bot = await database_sync_to_async(lambda: Bot.objects.filter(slug="prop").first() or bot_create(
        slug="prop", name="Prop", allowed_origins=[ORIGIN]))()  # fmt: skip
    communicator = WebsocketCommunicator(application, f"/ws/chat/{bot.public_id}/",
                                         headers=[(b"host", b"parley.test"), (b"origin", ORIGIN.encode())])  # fmt: skip
    communicator.scope["client"] = (f"10.200.{next(_ips) % 250}.{next(_ips) % 250}", 1)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "hello", "protocol": 1})
    ready = await communicator.receive_json_from(timeout=5)
    for item in sequence:
        if isinstance(item, bytes):
            await communicator.send_to(bytes_data=item)
        else:
            await communicator.send_to(text_data=item)
    # Still alive: it answers a ping after everything else.
    await communicator.send_json_to({"type": "ping"})
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "pong":
        assert frame["type"] in {"error", "ready", "ack", "lead_form", "lead_errors", "lead_saved", "handoff"}, frame
        if frame["type"] == "error":
            assert frame["code"] != "server_error", frame
    await communicator.disconnect()

    def consistent() -> None:
        messages = list(Message.objects.filter(conversation__bot=bot).order_by("id"))
        # One answer streams at a time in each conversation ("new_conversation" may have started several).
        for conversation_id in {m.conversation_id for m in messages} | {ready["conversation_id"]}:
            assert sum(m.status == "streaming" for m in messages if m.conversation_id == conversation_id) <= 1
        for message in messages:
            if message.role == "bot" and message.in_reply_to_id is not None:
                assert message.in_reply_to.role == "visitor"
                assert message.in_reply_to.conversation_id == message.conversation_id
        client_ids = [m.client_id for m in messages if m.client_id]
        assert len(client_ids) == len(set((m.conversation_id, m.client_id) for m in messages if m.client_id))

    await database_sync_to_async(consistent)()
