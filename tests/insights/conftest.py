"""Set-up for the insights tests: a bot whose own model is the TGI simulator, and finished conversations about
shipping and refunds, with the replies the "model" gives to each prompt."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chatbot.bots.services import bot_create
from chatbot.models import Bot, Conversation, Message
from devtools.tgi_simulator import TGISimulator

SHIPPING = ["Do you ship to Norway?", "Can I get delivery to Norway?", "How long does shipping to Norway take?"]
REFUNDS = ["How do I get a refund?", "When will my refund arrive?"]
# What the simulated model answers, by a piece of the prompt: a label per group of questions, a summary per
# conversation (keyed on the visitor's last words), a neutral summary for any other.
REPLIES = {
    "- Do you ship to Norway?": "Shipping to Norway",
    "- How do I get a refund?": "Refunds",
    "thanks, that helps": "Summary: Asked about shipping to Norway and got the delivery times.\nSentiment: positive",
    "this is taking forever": "Summary: Waited too long for a refund and was annoyed.\nSentiment: negative",
}
DEFAULT_REPLY = "Summary: Asked a question about an order.\nSentiment: neutral"


@pytest.fixture
def sim(sim):
    """The TGI simulator (tests/conftest.py), answering as REPLIES says."""
    sim.configure(script_text=DEFAULT_REPLY, script_replies=REPLIES)
    return sim


def conversation_add(bot: Bot, visitor_id: str, *texts: str, minutes_ago: float = 120) -> Conversation:
    """A conversation of visitor messages, each answered by the bot, last active `minutes_ago`."""
    when = timezone.now() - timedelta(minutes=minutes_ago)
    conversation = Conversation.objects.create(bot=bot, visitor_id=visitor_id)
    for n, text in enumerate(texts):
        asked = Message.objects.create(conversation=conversation, role="visitor", text=text)
        answer = Message.objects.create(conversation=conversation, role="bot", in_reply_to=asked, text="Here you go.")
        Message.objects.filter(id=asked.id).update(created_at=when - timedelta(seconds=10 * (len(texts) - n)))
        Message.objects.filter(id=answer.id).update(created_at=when - timedelta(seconds=10 * (len(texts) - n) - 5))
    Conversation.objects.filter(id=conversation.id).update(started_at=when - timedelta(minutes=5), last_message_at=when)
    conversation.refresh_from_db()
    return conversation


def history_add(bot: Bot) -> dict[str, Conversation]:
    """Three conversations about shipping to Norway, two about refunds, one lone question, one still going."""
    return {
        "happy": conversation_add(bot, "v-happy", SHIPPING[0], "Great, thanks, that helps!"),
        "shipping-2": conversation_add(bot, "v-ship-2", SHIPPING[1]),
        "shipping-3": conversation_add(bot, "v-ship-3", SHIPPING[2]),
        "annoyed": conversation_add(bot, "v-annoyed", REFUNDS[0], "Three weeks already, this is taking forever"),
        "refund-2": conversation_add(bot, "v-refund-2", REFUNDS[1]),
        "lone": conversation_add(bot, "v-lone", "Is the tent waterproof?"),
        "ongoing": conversation_add(bot, "v-ongoing", "Do you deliver to Norway?", minutes_ago=2),
    }


def model_bot(sim: TGISimulator, **fields) -> Bot:
    return bot_create(slug="acme", name="Acme Outdoor", model_endpoint=sim.url, adapter_id="acme-voice", **fields)
