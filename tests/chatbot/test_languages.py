"""What Parley says itself (strict mode's "I don't know", the model down, an answer cut off or lost, the chat
socket's error frames) in the visitor's language: their widget's, else the bot's; English for any other. The
English texts stay as they were."""

import datetime

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from chatbot.answers import watchdog
from chatbot.answers.pipeline import answer_generate
from chatbot.answers.texts import ANSWER_TEXTS, answer_text, text_language
from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.chat.texts import CHAT_TEXTS, chat_text
from chatbot.models import Conversation, Message
from tests.chatbot import GroupListener, stop_requests_forget

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://www.acme.test"


@pytest.fixture(autouse=True)
def no_stale_stop_requests():
    stop_requests_forget()


def lingual_bot(language: str, **fields):
    return bot_create(slug=f"acme-{language}", name="Acme", language=language, allowed_origins=[ORIGIN], **fields)


def ask(bot, text: str, *, visitor_language: str = "") -> Message:
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1", language=visitor_language)
    return message_receive(conversation=conversation, text=text, dispatch_answer=False)[1]


def answered(message: Message) -> tuple[Message, list[dict]]:
    with GroupListener(message.conversation.group_name) as listener:
        answer_generate(message_id=message.id)
        listener.wait_for("chat.done")
        events = listener.settle()
    message.refresh_from_db()
    return message, events


def test_every_text_exists_in_english_french_and_german():
    for catalogue in (ANSWER_TEXTS, CHAT_TEXTS):
        for key, texts in catalogue.items():
            assert set(texts) == {"en", "fr", "de"}, key
            assert len({texts["en"], texts["fr"], texts["de"]}) == 3, key


def test_the_english_texts_are_kept_as_they_were():
    from chatbot.answers.fallback import MODEL_DOWN_NO_PASSAGES, STRICT_NO_ANSWER
    from chatbot.answers.generation import MID_ANSWER_FAILURE

    assert STRICT_NO_ANSWER.startswith("I'm sorry, I couldn't find anything about that in our documentation")
    assert answer_text("model_down_no_passages", "en") == MODEL_DOWN_NO_PASSAGES
    assert MID_ANSWER_FAILURE == "The answer was cut off by a problem on our side. Please try again."
    assert watchdog.LOST_MESSAGE == "The answer was cut off by a problem on our side. Please ask again."


@pytest.mark.parametrize(
    ("candidates", "language"),
    [(("fr-CA", "en"), "fr"), (("", "de"), "de"), (("es", "de"), "de"), (("es", "it"), "en"), ((None, ""), "en")],
)
def test_the_visitors_language_comes_first_then_the_bots_then_english(candidates, language):
    assert text_language(*candidates) == language


def test_strict_mode_says_it_does_not_know_in_the_bots_language():
    bot = lingual_bot("fr", strict_mode=True)
    message, events = answered(ask(bot, "Quels sont vos horaires ?"))
    assert message.text == events[-1]["text"] == ANSWER_TEXTS["strict_no_answer"]["fr"]
    assert message.text.startswith("Désolé, je n'ai rien trouvé")


def test_without_a_model_the_visitor_is_told_in_their_widgets_language(settings):
    settings.TGI_URL = ""
    bot = lingual_bot("en")
    message, _ = answered(ask(bot, "Wie lange dauert der Versand?", visitor_language="de"))
    assert (message.status, message.text) == ("retrieval_only", ANSWER_TEXTS["nothing_in_documentation"]["de"])


def test_an_answer_cut_off_by_the_model_server_is_explained_in_the_bots_language(sim):
    sim.configure(fault="error_midstream", fault_after_tokens=3)
    bot = lingual_bot("de", model_endpoint=sim.url)
    _, events = answered(ask(bot, "Was ist Deep Learning?"))
    error = events[-1]
    assert (error["type"], error["code"]) == ("chat.error", "answer_failed")
    assert error["message"] == ANSWER_TEXTS["answer_cut_off"]["de"]


def test_an_answer_whose_worker_was_lost_is_ended_in_the_visitors_language():
    bot = lingual_bot("en")
    message = ask(bot, "Bonjour ?", visitor_language="fr")
    Message.objects.filter(id=message.id).update(
        created_at=timezone.now() - datetime.timedelta(seconds=settings.PARLEY_ANSWER_NOT_STARTED_AFTER_S + 1)
    )
    with GroupListener(message.conversation.group_name) as listener:
        assert watchdog.lost_answers_finalise(recheck_after_s=0) == [message.id]
        _, error = listener.wait_for("chat.error")
    assert error["message"] == ANSWER_TEXTS["answer_lost"]["fr"]


async def socket(bot, *, origin: str = ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/{bot.public_id}/", headers=[(b"host", b"parley.test"), (b"origin", origin.encode())]
    )
    communicator.scope["client"] = ("10.7.0.1", 50000)
    assert (await communicator.connect())[0]
    return communicator


async def test_the_chat_sockets_error_frames_are_in_the_bots_language_before_hello_and_the_visitors_after():
    from channels.db import database_sync_to_async

    bot = await database_sync_to_async(lingual_bot)("fr")
    visitor = await socket(bot)

    await visitor.send_json_to({"type": "message", "text": "Bonjour"})
    assert (await visitor.receive_json_from(timeout=5))["message"] == CHAT_TEXTS["hello_first"]["fr"]

    await visitor.send_json_to({"type": "hello", "lang": "de"})
    ready = await visitor.receive_json_from(timeout=5)
    assert ready["type"] == "ready"
    await visitor.send_json_to({"type": "message", "text": "x" * 4001})
    too_long = await visitor.receive_json_from(timeout=5)
    assert (too_long["code"], too_long["message"]) == ("too_long", chat_text("too_long", "de", max=4000))
    await visitor.send_json_to({"type": "dance"})
    assert (await visitor.receive_json_from(timeout=5))["message"] == "Unbekannter Frame-Typ 'dance'."
    await visitor.send_json_to({"type": "feedback", "message_id": 10**9, "value": "up"})
    assert (await visitor.receive_json_from(timeout=5))["message"] == CHAT_TEXTS["not_in_conversation"]["de"]
    await visitor.disconnect()


async def test_a_site_that_may_not_embed_the_chat_is_told_in_the_bots_language():
    from channels.db import database_sync_to_async

    bot = await database_sync_to_async(lingual_bot)("de")
    visitor = await socket(bot, origin="https://elsewhere.test")
    refused = await visitor.receive_json_from(timeout=5)
    assert (refused["code"], refused["message"]) == ("forbidden", CHAT_TEXTS["origin_forbidden"]["de"])
    await visitor.wait(timeout=5)


async def test_a_busy_conversation_is_explained_in_the_visitors_language():
    from channels.db import database_sync_to_async

    bot = await database_sync_to_async(lingual_bot)("en")
    visitor = await socket(bot)
    await visitor.send_json_to({"type": "hello", "lang": "fr"})
    ready = await visitor.receive_json_from(timeout=5)
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    # An answer still streaming (no worker runs here): the next message must wait.
    await database_sync_to_async(message_receive)(conversation=conversation, text="First", dispatch_answer=False)

    await visitor.send_json_to({"type": "message", "text": "Second", "client_id": "c2"})

    busy = await visitor.receive_json_from(timeout=5)
    assert (busy["code"], busy["message"]) == ("busy", CHAT_TEXTS["busy"]["fr"])
    await visitor.disconnect()
