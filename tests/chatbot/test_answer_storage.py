"""The message an answer task answers: loaded as the ORM's `select_related` loads it and its outcome saved as
`QuerySet.update` saves it, each in one statement."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatbot.answers.storage import answer_message_finish, answer_message_load, conversation_messages_before
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.models import ApprovedAnswer, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot():
    return bot_create(
        slug="acme",
        name="Acme",
        allowed_origins=["https://www.acme.test"],
        stop_sequences=["<|eot_id|>"],
        lead_form={"enabled": True, "fields": ["email"]},
    )


def column_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_it_loads_the_message_its_conversation_bot_and_question_as_the_orm_does_in_one_statement(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    _, answer = message_receive(conversation=conversation, text="Do you ship abroad?", dispatch_answer=False)
    Message.objects.filter(id=answer.id).update(citations=[{"n": 1, "url": "https://www.acme.test/a"}])
    expected = Message.objects.select_related("conversation__bot", "in_reply_to").get(id=answer.id)

    with CaptureQueriesContext(connection) as statements:
        loaded = answer_message_load(answer.id)
        conversation_, bot_, question_ = loaded.conversation, loaded.conversation.bot, loaded.in_reply_to

    assert len(statements) == 1
    assert column_values(loaded) == column_values(expected)
    assert column_values(conversation_) == column_values(expected.conversation)
    assert column_values(bot_) == column_values(expected.conversation.bot)
    assert column_values(question_) == column_values(expected.in_reply_to)
    assert loaded.citations == [{"n": 1, "url": "https://www.acme.test/a"}]  # JSON, parsed as the field does
    assert bot_.allowed_origins == ["https://www.acme.test"]
    assert bot_.lead_form == {"enabled": True, "fields": ["email"]}
    assert not loaded._state.adding and loaded._state.db == "default"


def test_it_says_whether_the_question_is_a_follow_up_and_whether_the_bot_has_approved_answers(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    _, first = message_receive(conversation=conversation, text="Do you ship abroad?", dispatch_answer=False)
    loaded = answer_message_load(first.id)
    assert (loaded.has_earlier_messages, loaded.bot_has_approved_answers) == (False, False)

    Message.objects.filter(id=first.id).update(status=Message.Status.COMPLETE, text="We do.")
    ApprovedAnswer.objects.create(bot=bot, question="Refunds?", answer="Within 30 days.", embedding=[0.1] * 384)
    _, follow_up = message_receive(conversation=conversation, text="And to Norway?", dispatch_answer=False)
    loaded = answer_message_load(follow_up.id)
    assert (loaded.has_earlier_messages, loaded.bot_has_approved_answers) == (True, True)


def test_a_message_no_longer_streaming_or_gone_is_not_loaded(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    _, answer = message_receive(conversation=conversation, text="Do you ship abroad?", dispatch_answer=False)
    Message.objects.filter(id=answer.id).update(status=Message.Status.COMPLETE)

    assert answer_message_load(answer.id) is None
    assert answer_message_load(answer.id + 1000) is None


def test_a_bot_message_without_a_question_has_none():
    bot = bot_create(slug="plain", name="Plain")
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    greeting = Message.objects.create(
        conversation=conversation, role=Message.Role.BOT, status=Message.Status.STREAMING, text=""
    )

    loaded = answer_message_load(greeting.id)

    assert loaded.in_reply_to is None and loaded.conversation.bot == bot
    assert (loaded.has_earlier_messages, loaded.bot_has_approved_answers) == (False, False)


def test_the_outcome_is_saved_as_queryset_update_saves_it_while_the_message_streams(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    _, answer = message_receive(conversation=conversation, text="Do you ship abroad?", dispatch_answer=False)
    _, by_the_orm = message_receive(conversation=conversation_resume_or_start(bot=bot, visitor_id="visitor-2"),
                                    text="Do you ship abroad?", dispatch_answer=False)  # fmt: skip
    outcome = {
        "text": "We ship worldwide [1].",
        "status": Message.Status.COMPLETE,
        "citations": [{"n": 1, "title": "Shipping", "url": "https://www.acme.test/shipping"}],
        "prompt": [{"role": "system", "content": "You are Acme's assistant."}],
        "retrieved": [{"chunk_id": 7, "sent": True, "score": 0.61}],
        "finish_reason": "stop",
        "prompt_tokens": 120,
        "ttft_ms": 41.5,
        "finished_at": answer.created_at,
    }

    with CaptureQueriesContext(connection) as statements:
        assert answer_message_finish(answer.id, **outcome)
    Message.objects.filter(id=by_the_orm.id).update(**outcome)

    assert len(statements) == 1
    left_out = {"id", "conversation_id", "in_reply_to_id", "created_at"}
    saved, expected = (
        {k: v for k, v in column_values(Message.objects.get(id=m.id)).items() if k not in left_out}
        for m in (answer, by_the_orm)
    )
    assert saved == expected
    assert Message.objects.filter(id=answer.id, citations__0__n=1, retrieved__0__chunk_id=7).exists()  # JSON
    # Ended already (the watchdog took it for lost): nothing is saved over it.
    assert not answer_message_finish(answer.id, text="Too late.", status=Message.Status.COMPLETE)
    assert Message.objects.get(id=answer.id).text == "We ship worldwide [1]."


def test_a_follow_ups_earlier_messages_are_read_newest_first_without_those_streaming_or_failed(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    for n, (status, trace) in enumerate(
        [
            ("complete", [{"chunk_id": 3, "sent": True}]),
            ("error", []),
            ("complete", [{"chunk_id": 5, "sent": True}]),
            ("error", [{"chunk_id": 6, "sent": True}]),
        ]
    ):
        _, answer = message_receive(conversation=conversation, text=f"Question {n}?", dispatch_answer=False)
        Message.objects.filter(id=answer.id).update(status=status, text=f"Answer {n}.", retrieved=trace)
    question, _ = message_receive(conversation=conversation, text="And now?", dispatch_answer=False)
    by_the_orm = [
        (m.role, m.text)
        for m in Message.objects.filter(conversation=conversation, created_at__lt=question.created_at)
        .exclude(status__in=["streaming", "error"])
        .order_by("-created_at", "-id")[:5]
    ]

    earlier = conversation_messages_before(conversation_id=conversation.id, before=question.created_at, limit=5)

    assert [(m.role, m.text) for m in earlier] == by_the_orm
    assert [m.text for m in earlier] == ["Question 3?", "Answer 2.", "Question 2?", "Question 1?", "Answer 0."]
    # The trace of the newest answer that ended well, parsed as the JSON field does; the older answer's is not read.
    assert [m.retrieved for m in earlier] == [None, [{"chunk_id": 5, "sent": True}], None, None, None]
