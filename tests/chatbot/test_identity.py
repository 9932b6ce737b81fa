"""Verified visitors: the host site signs a logged-in user's id with the bot's identity secret. A valid hash makes
the user the same visitor on every device (their conversation follows them) with their name and email; a forged
or missing hash is ignored (the widget warns) and the visitor stays anonymous. Through the real chat socket."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatbot.asgi import application
from chatbot.chat.identity import identity_hash
from chatbot.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


def socket(bot) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{bot.public_id}/",
        headers=[(b"host", b"parley.test"), (b"origin", b"https://www.acme.test")],
    )
    communicator.scope["client"] = ("10.8.0.1", 50000)
    return communicator


async def hello(bot, **fields) -> dict:
    """A new device (no visitor token unless given): the `ready` frame."""
    communicator = socket(bot)
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "hello", **fields})
    while (frame := await communicator.receive_json_from(timeout=5))["type"] != "ready":
        pass
    await communicator.disconnect()
    return frame


def identity(bot, user_id: str, **extra) -> dict:
    return {"user_id": user_id, "user_hash": identity_hash(secret=bot.identity_secret, user_id=user_id), **extra}


async def test_a_verified_user_finds_the_same_conversation_on_another_device(bot):
    laptop = await hello(bot, identity=identity(bot, "user-42", name="Ada Lovelace", email="ada@example.com"))
    phone = await hello(bot, identity=identity(bot, "user-42"))

    assert laptop["identity"] == phone["identity"] == "verified"
    assert phone["conversation_id"] == laptop["conversation_id"]
    assert phone["visitor"] == {"name": "Ada Lovelace", "email": "ada@example.com"}
    conversation = await database_sync_to_async(Conversation.objects.get)(id=laptop["conversation_id"])
    assert (conversation.visitor_verified, conversation.visitor_name, conversation.visitor_email) == (
        True, "Ada Lovelace", "ada@example.com",
    )  # fmt: skip
    other = await hello(bot, identity=identity(bot, "user-43"))
    assert other["conversation_id"] != laptop["conversation_id"]


@pytest.mark.parametrize("user_hash", ["", "0" * 64, "not hex at all"])
async def test_a_forged_or_missing_hash_is_ignored(bot, user_hash):
    verified = await hello(bot, identity=identity(bot, "user-42", name="Ada"))
    forged = await hello(bot, identity={"user_id": "user-42", "user_hash": user_hash, "name": "Mallory"})

    assert forged["identity"] == "rejected"
    assert "visitor" not in forged
    assert forged["conversation_id"] != verified["conversation_id"]  # not Ada's conversation
    conversation = await database_sync_to_async(Conversation.objects.get)(id=forged["conversation_id"])
    assert (conversation.visitor_verified, conversation.visitor_name) == (False, "")


async def test_a_hash_made_with_another_secret_is_refused(bot):
    user_hash = identity_hash(secret="someone-elses-secret", user_id="user-42")
    ready = await hello(bot, identity={"user_id": "user-42", "user_hash": user_hash})
    assert ready["identity"] == "rejected"


async def test_without_an_identity_nothing_changes(bot):
    ready = await hello(bot)
    assert "identity" not in ready and "visitor" not in ready


async def test_after_the_user_logs_out_the_browser_starts_an_anonymous_conversation(bot):
    verified = await hello(bot, identity=identity(bot, "user-42"))
    logged_out = await hello(bot, visitor_token=verified["visitor_token"])
    assert logged_out["conversation_id"] != verified["conversation_id"]
    assert logged_out["messages"] == []
