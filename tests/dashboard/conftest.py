"""Staff of every kind, two bots, and helpers to open the staff websocket as one of them."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.dashboard.services import staff_member_save

PASSWORD = "correct-horse-battery"


@pytest.fixture
def other_bot(db):
    return bot_create(slug="globex", name="Globex Help", allowed_origins=["https://www.globex.test"])


@pytest.fixture
def admin(db):
    return staff_member_save(username="ada", role="admin", display_name="Ada", password=PASSWORD).user


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", "root@example.test", PASSWORD)


@pytest.fixture
def agent(db, bot):
    return staff_member_save(username="alan", role="agent", bots=[bot], display_name="Alan", password=PASSWORD).user


@pytest.fixture
def agent_with_leads(db, bot):
    return staff_member_save(username="grace", role="agent", bots=[bot], can_view_leads=True, password=PASSWORD).user


@pytest.fixture
def other_agent(db, other_bot):
    return staff_member_save(username="edsger", role="agent", bots=[other_bot], password=PASSWORD).user


@pytest.fixture
def outsider(db):
    """Logged in, but not staff."""
    return get_user_model().objects.create_user("mallory", password=PASSWORD)


@pytest.fixture
def conversation(bot):
    return conversation_resume_or_start(
        bot=bot, visitor_id="visitor-1", page_url="https://www.acme.test/pricing", referrer="https://search.test/"
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def staff_socket(user=None, *, origin: str = "http://localhost") -> WebsocketCommunicator:
    """The staff websocket with `user`'s session cookie (anonymous without a user)."""
    headers = [(b"host", b"localhost"), (b"origin", origin.encode())]
    if user is not None:
        session = await database_sync_to_async(lambda: logged_in(user).cookies["sessionid"].value)()
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)


def chat_socket(bot, *, ip: str = "10.9.0.1") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{bot.public_id}/",
        headers=[(b"host", b"parley.test"), (b"origin", bot.allowed_origins[0].encode())],
    )
    communicator.scope["client"] = (ip, 50000)
    return communicator


async def receive_until(communicator, kind: str, *, timeout: float = 5, **match) -> dict:
    """The next frame of type `kind` (and matching fields), skipping others."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
            return frame
