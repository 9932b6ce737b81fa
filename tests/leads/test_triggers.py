"""When the lead form is offered: before the chat, after N visitor messages, when nobody can take over, and (from the
answer pipeline) when the bot could not answer or the visitor shows buying intent. Once per conversation, never
again after a lead or a dismissal (except when the visitor asks for a person)."""

import pytest

from chatbot.answers.fallback import STRICT_NO_ANSWER
from chatbot.answers.outcome import AnswerOutcome
from chatbot.chat.conversations import message_receive
from chatbot.leads.capture import lead_capture
from chatbot.leads.triggers import (
    buying_intent_detect,
    lead_form_after_answer,
    lead_form_after_visitor_message,
    lead_form_dismiss,
    lead_form_offer_reason,
    lead_form_on_handoff_unavailable,
    lead_form_on_hello,
)
from chatbot.models import Conversation, Message
from tests.chatbot import GroupListener

from .conftest import GOOD, LEAD_FORM, lead_bot_create, visit

ANSWERED = AnswerOutcome(text="We ship in two days [1].", citations=[{"n": 1, "title": "Shipping", "url": "https://x"}])


def with_triggers(**triggers) -> dict:
    return {**LEAD_FORM, "triggers": {**LEAD_FORM["triggers"], **triggers}}


def fresh(conversation: Conversation) -> Conversation:
    return Conversation.objects.get(pk=conversation.pk)


def say(conversation: Conversation, text: str) -> None:
    message_receive(conversation=conversation, text=text, dispatch_answer=False)
    # The answer is not under test: finish it so the next message is accepted.
    conversation.messages.filter(status=Message.Status.STREAMING).update(status=Message.Status.COMPLETE)


def test_it_offers_the_form_before_the_chat_and_again_on_reconnect_until_it_is_answered(db):
    bot = lead_bot_create(lead_form=with_triggers(before_chat=True))
    conversation = visit(bot)
    frame = lead_form_on_hello(conversation=conversation)
    assert frame["type"] == "lead_form"
    assert frame["reason"] == "before_chat"
    assert frame["form"]["title"] == "Talk to our sales team"
    # The widget lost it in a reload: it comes back, with the reason it was first offered for.
    assert lead_form_on_hello(conversation=fresh(conversation))["reason"] == "before_chat"
    lead_capture(conversation=conversation, fields=GOOD)
    assert lead_form_on_hello(conversation=fresh(conversation)) is None


def test_it_does_not_offer_a_form_before_the_chat_unless_configured(lead_bot):
    assert lead_form_on_hello(conversation=visit(lead_bot)) is None


def test_it_never_offers_a_dismissed_form_again(db):
    bot = lead_bot_create(lead_form=with_triggers(before_chat=True))
    conversation = visit(bot)
    assert lead_form_on_hello(conversation=conversation) is not None
    lead_form_dismiss(conversation=conversation)
    assert lead_form_on_hello(conversation=fresh(conversation)) is None
    for _ in range(3):
        say(conversation, "Tell me more")
    assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None


def test_it_offers_the_form_after_the_nth_visitor_message_once(lead_bot):
    conversation = visit(lead_bot)
    for n in (1, 2):
        say(conversation, f"Question {n}")
        assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None
    say(conversation, "Question 3")
    assert lead_form_after_visitor_message(conversation=fresh(conversation))["reason"] == "after_messages"
    say(conversation, "Question 4")
    assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None


def test_no_form_after_n_messages_while_staff_have_the_conversation_and_replies_to_them_do_not_count(lead_bot):
    from chatbot.chat.staff import conversation_hand_back, conversation_take_over
    from chatbot.dashboard.services import staff_member_save

    agent = staff_member_save(username="alan", role="agent", bots=[lead_bot], password="correct-horse").user
    conversation = visit(lead_bot)
    say(conversation, "Question 1")
    conversation_take_over(conversation=fresh(conversation), user=agent)
    for n in range(4):
        say(conversation, f"Reply {n} to the agent")
        assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None
    conversation_hand_back(conversation=fresh(conversation), user=agent)
    say(conversation, "Question 2")
    assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None  # 2 to the bot, not 6
    say(conversation, "Question 3")
    assert lead_form_after_visitor_message(conversation=fresh(conversation))["reason"] == "after_messages"


def test_it_offers_the_form_when_nobody_can_take_over_even_after_a_dismissal(lead_bot):
    conversation = visit(lead_bot)
    lead_form_dismiss(conversation=conversation)
    assert lead_form_on_handoff_unavailable(conversation=fresh(conversation))["reason"] == "no_human"
    assert fresh(conversation).lead_form_reason == "no_human"


def test_it_offers_nothing_when_the_trigger_is_off_or_the_bot_has_no_form(db):
    off = lead_bot_create(slug="off", lead_form=with_triggers(no_human=False, after_messages=0))
    conversation = visit(off)
    assert lead_form_on_handoff_unavailable(conversation=conversation) is None
    for _ in range(4):
        say(conversation, "Hello")
    assert lead_form_after_visitor_message(conversation=fresh(conversation)) is None
    formless = visit(lead_bot_create(slug="formless", lead_form={}), visitor_id="v2")
    assert lead_form_on_handoff_unavailable(conversation=formless) is None
    assert lead_form_offer_reason(conversation=formless, question="pricing?", outcome=ANSWERED) is None


def test_it_offers_the_form_when_the_bot_cannot_answer(lead_bot):
    conversation = visit(lead_bot)
    strict = AnswerOutcome(text=STRICT_NO_ANSWER, finish_reason="no_relevant_passages")
    model_down = AnswerOutcome(text="Sorry", status=Message.Status.RETRIEVAL_ONLY, finish_reason="connect")
    passages_only = AnswerOutcome(
        text="These look relevant", status=Message.Status.RETRIEVAL_ONLY, citations=ANSWERED.citations
    )
    assert lead_form_offer_reason(conversation=conversation, question="Do you ship to Mars?", outcome=strict) == (
        "cannot_answer"
    )
    assert lead_form_offer_reason(conversation=conversation, question="Shipping?", outcome=model_down) == (
        "cannot_answer"
    )
    assert lead_form_offer_reason(conversation=conversation, question="Shipping?", outcome=passages_only) is None
    assert lead_form_offer_reason(conversation=conversation, question="Shipping?", outcome=ANSWERED) is None


@pytest.mark.parametrize(
    "question",
    [
        "What is your pricing?",
        "Can I get a QUOTE for 40 seats",
        "I want to buy it",
        "Could we book a demo?",
        "Please put me in touch with sales.",
        "How much does the pro plan cost?",
        "Quel est le prix ?",
        "Je voudrais un devis",
        "Pouvez-vous me faire une démo ?",
        "Was kostet das? Ich möchte ein Angebot.",
        "Wie viel kostet die Lizenz?",
    ],
)
def test_it_detects_buying_intent_in_english_french_and_german(question):
    assert buying_intent_detect(text=question)


@pytest.mark.parametrize(
    "question", ["Do you ship abroad?", "How do I return an item?", "My buyer's remorse", "Where is the demolition?"]
)
def test_it_does_not_see_buying_intent_in_ordinary_questions(question):
    assert not buying_intent_detect(text=question)


def test_it_offers_the_form_on_buying_intent_and_takes_the_bots_own_keywords(db):
    bot = lead_bot_create(lead_form={**LEAD_FORM, "intent_keywords": ["volume licence"]})
    conversation = visit(bot)
    assert lead_form_offer_reason(conversation=conversation, question="Any pricing?", outcome=ANSWERED) == (
        "buying_intent"
    )
    assert lead_form_offer_reason(conversation=conversation, question="A volume licence?", outcome=ANSWERED) == (
        "buying_intent"
    )
    assert lead_form_offer_reason(conversation=conversation, question="Shipping times?", outcome=ANSWERED) is None


def test_the_answer_pipeline_offers_the_form_to_every_open_widget_once(lead_bot):
    conversation = visit(lead_bot)
    with GroupListener(conversation.group_name) as listener:
        assert lead_form_after_answer(conversation=conversation, question="Pricing?", outcome=ANSWERED) == (
            "buying_intent"
        )
        listener.wait_for("chat.frame")
        assert lead_form_after_answer(conversation=fresh(conversation), question="A quote?", outcome=ANSWERED) is None
        events = listener.settle()
    assert [event["frame"]["reason"] for event in events] == ["buying_intent"]
    assert events[0]["frame"]["type"] == "lead_form"
    assert [f["name"] for f in events[0]["frame"]["form"]["fields"]][:2] == ["name", "email"]
