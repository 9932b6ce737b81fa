"""A conversation over the chat websocket, answered by a real Celery worker, the model played by the TGI simulator:
a follow-up question is searched in the light of the earlier one, and the passage that answers it reaches the
model's prompt (checked at the model server's boundary, in the requests the simulator received)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.models import Message
from devtools.pytest_plugin import start_celery_worker
from tests.chatbot import page_add, stop_requests_forget
from tests.chatbot.test_answering import prompt_passages

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://www.shop.test"
PAGES = [
    (
        "Shipping to Norway",
        "https://www.shop.test/help/norway",
        "We ship to Norway from our warehouse in Hamburg. A parcel to Norway arrives in six to eight business days, "
        "and Norwegian customs charge VAT on arrival.",
    ),
    (
        "Refunds",
        "https://www.shop.test/help/refunds",
        "A refund takes five business days to reach your card once we have your return.",
    ),
    (
        "Setting up an account",
        "https://www.shop.test/help/account",
        "Creating an account takes about a minute: choose a password and confirm your email address.",
    ),
    (
        "Repairs",
        "https://www.shop.test/help/repairs",
        "A repair in our workshop takes two to three weeks, and we call you when it is done.",
    ),
]
NORWAY_DELIVERY = "A parcel to Norway arrives in six to eight business days"


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, running_simulator, tmp_path_factory):
    with django_db_blocker.unblock():
        process = start_celery_worker(
            log_path=tmp_path_factory.mktemp("worker") / "worker.log", concurrency=4, TGI_URL=running_simulator.url
        )
    yield process
    process.stop()


@pytest.fixture
def shop(db, sim):
    stop_requests_forget()
    bot = bot_create(slug="shop", name="Shop", allowed_origins=[ORIGIN])
    for title, url, text in PAGES:
        page_add(bot, title=title, url=url, text=text)
    return bot


async def _chat(bot) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/{bot.public_id}/", headers=[(b"host", b"parley.test"), (b"origin", ORIGIN.encode())]
    )
    communicator.scope["client"] = ("10.9.0.1", 50000)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "protocol": 1, "visitor_token": None})
    assert (await communicator.receive_json_from(timeout=10))["type"] == "ready"
    return communicator


async def _ask(communicator: WebsocketCommunicator, text: str) -> dict:
    """Send a question and return the answer's `done` frame."""
    await communicator.send_json_to({"type": "message", "text": text, "client_id": text})
    while True:
        frame = await communicator.receive_json_from(timeout=60)
        if frame["type"] == "done":
            return frame


async def test_a_follow_up_brings_the_passage_that_answers_it_into_the_models_prompt(shop, sim, worker):
    sim.configure(script_text="It takes six to eight business days [1].")
    communicator = await _chat(shop)

    first = await _ask(communicator, "Do you ship to Norway?")
    follow_up = await _ask(communicator, "How long does it take?")
    await communicator.disconnect()

    assert first["status"] == follow_up["status"] == "complete"
    prompts = [request["body"]["messages"][0]["content"] for request in sim.generation_requests()]
    assert len(prompts) == 2
    passages = prompt_passages(prompts[1])
    assert passages[1][0] == "Shipping to Norway", "the answering passage comes first in the follow-up's prompt"
    assert NORWAY_DELIVERY in prompts[1]
    assert follow_up["citations"] == [
        {"n": 1, "title": "Shipping to Norway", "url": "https://www.shop.test/help/norway"}
    ]
    traces = await database_sync_to_async(
        lambda: [m.retrieved for m in Message.objects.filter(role=Message.Role.BOT).order_by("id")]
    )()
    assert {p["context"] for p in traces[0]} == {"none"}, "a first question is searched on its own"
    assert {p["context"] for p in traces[1]} == {"follow_up"}


async def test_the_same_question_asked_first_does_not_find_norway_first(shop, sim, worker):
    """What the follow-up test would see without the conversation: durations of anything."""
    sim.configure(script_text="It depends [1].")
    communicator = await _chat(shop)

    await _ask(communicator, "How long does it take?")
    await communicator.disconnect()

    prompt = sim.generation_requests()[-1]["body"]["messages"][0]["content"]
    assert prompt_passages(prompt).get(1, ("",))[0] != "Shipping to Norway"
