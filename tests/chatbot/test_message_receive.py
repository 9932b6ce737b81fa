"""Saving a visitor's message: one answer at a time in a conversation, whatever the timing of its tabs."""

import threading

import pytest
import redis
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatbot.bots.services import bot_create
from chatbot.chat.conversations import ConversationBusy, conversation_resume_or_start, message_receive
from chatbot.models import Conversation, Message
from chatbot.realtime import connections


def sent_at_the_same_moment(conversation: Conversation, texts: list[str]) -> list[str]:
    """Each text from a thread of its own (a tab, a Daphne thread), released together; what each got."""
    ready = threading.Barrier(len(texts))
    outcomes: list[str] = []

    def send(text: str) -> None:
        try:
            ready.wait()
            message_receive(conversation=conversation, text=text, client_id=text, dispatch_answer=False)
            outcomes.append("saved")
        except ConversationBusy:
            outcomes.append("busy")
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_tabs_sending_at_the_same_moment_get_one_answer_and_the_other_is_told_it_is_busy():
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    for round_ in range(5):
        conversation = conversation_resume_or_start(bot=bot, visitor_id=f"visitor-{round_}")

        outcomes = sent_at_the_same_moment(conversation, [f"first tab {round_}", f"second tab {round_}"])

        assert sorted(outcomes) == ["busy", "saved"]
        assert conversation.messages.filter(role=Message.Role.VISITOR).count() == 1
        assert conversation.messages.filter(role=Message.Role.BOT, status=Message.Status.STREAMING).count() == 1


@pytest.mark.django_db
def test_a_message_sent_again_after_a_reconnect_changes_nothing():
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    question, answer = message_receive(conversation=conversation, text="Do you ship abroad?", client_id="c-1")
    Message.objects.filter(id=answer.id).update(status=Message.Status.COMPLETE)
    Conversation.objects.filter(id=conversation.id).update(resolved_at=answer.created_at)
    before = Conversation.objects.get(id=conversation.id)

    again = message_receive(conversation=before, text="Do you ship abroad?", client_id="c-1")

    assert again == (question, answer)
    after = Conversation.objects.get(id=conversation.id)
    assert (after.last_message_at, after.resolved_at) == (before.last_message_at, before.resolved_at)
    assert conversation.messages.count() == 2


@pytest.mark.django_db
def test_the_question_and_its_answer_to_come_are_written_in_one_statement_the_answer_pointing_at_the_question():
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")

    with CaptureQueriesContext(connection) as queries:
        question, answer = message_receive(conversation=conversation, text="Do you ship abroad?", dispatch_answer=False)

    inserts = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    saved = {message.id: message for message in conversation.messages.all()}
    assert saved[question.id].text == "Do you ship abroad?" and saved[question.id].role == Message.Role.VISITOR
    assert saved[answer.id].in_reply_to_id == question.id and saved[answer.id].status == Message.Status.STREAMING
    assert saved[question.id].created_at <= saved[answer.id].created_at


@pytest.mark.django_db
def test_in_a_conversation_staff_took_over_only_the_question_is_saved():
    staff = get_user_model().objects.create_user("agent")
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    Conversation.objects.filter(id=conversation.id).update(taken_over_by=staff)

    question, answer = message_receive(conversation=conversation, text="Hello?", dispatch_answer=False)

    assert answer is None
    assert list(conversation.messages.values_list("id", "role")) == [(question.id, Message.Role.VISITOR)]


@pytest.fixture
def redis_unreachable(monkeypatch):
    """The process's Redis client pointed at a port nothing listens on, as while Redis restarts."""
    refused = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=2, socket_timeout=2)
    monkeypatch.setattr(connections, "_sync_client", refused)


@pytest.mark.django_db
def test_when_redis_cannot_say_whether_a_dashboard_is_open_the_message_is_saved_and_answered_without_an_error(
    django_capture_on_commit_callbacks, redis_unreachable
):
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")

    with django_capture_on_commit_callbacks(execute=True):
        question, answer = message_receive(conversation=conversation, text="Still there?", dispatch_answer=False)

    assert conversation.messages.get(id=question.id).text == "Still there?"
    assert conversation.messages.get(id=answer.id).status == Message.Status.STREAMING


@pytest.mark.django_db
def test_the_question_and_its_answer_are_saved_as_the_orm_saves_messages():
    bot = bot_create(slug="acme", name="Acme", allowed_origins=[])
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    question, answer = message_receive(
        conversation=conversation, text="Do you ship abroad?", client_id="c-1", dispatch_answer=False
    )
    by_the_orm = Message.objects.create(
        conversation=conversation, role=Message.Role.BOT, status=Message.Status.STREAMING, in_reply_to=question
    )

    def columns(message: Message, *left_out: str) -> dict:
        saved = Message.objects.get(id=message.id)
        return {f.attname: getattr(saved, f.attname) for f in Message._meta.concrete_fields if f.name not in left_out}

    assert not question._state.adding and not answer._state.adding
    assert columns(answer, "id", "created_at") == columns(by_the_orm, "id", "created_at")
    assert (question.role, question.text, question.client_id) == ("visitor", "Do you ship abroad?", "c-1")
    assert columns(question)["created_at"] == question.created_at <= columns(answer)["created_at"]
    # JSON columns hold JSON, not text: the database can look inside them.
    assert Message.objects.filter(id=answer.id, citations=[], retrieved=[], prompt=[]).exists()
    assert answer.in_reply_to_id == question.id
