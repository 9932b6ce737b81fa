"""Conversation reads and writes: what the chat consumer, the answer task and the dashboard call."""

import functools
import logging
from dataclasses import dataclass

import redis
from django.db import connection, transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from chatbot.answers.tasks import answer_message
from chatbot.chat.staff_feed import dashboard_message_notify, dashboard_visitor_left_notify
from chatbot.models import Bot, Conversation, Lead, Message, staff_display_name
from chatbot.realtime.presence import staff_online
from chatbot.realtime.protocol import Citation, MessagePayload
from chatbot.webhooks.events import conversation_started_emit, feedback_negative_emit, message_created_emit

logger = logging.getLogger(__name__)


class ConversationBusy(Exception):
    """The bot is still answering the previous message."""


def _clip_url(value: str) -> str:
    value = (value or "").strip()
    return value[:2000] if value.startswith(("http://", "https://")) else ""


def conversation_start(
    *,
    bot: Bot,
    visitor_id: str,
    page_url: str = "",
    referrer: str = "",
    language: str = "",
    user_agent: str = "",
    visitor_verified: bool = False,
    visitor_name: str = "",
    visitor_email: str = "",
) -> Conversation:
    """A new conversation of the visitor with the bot; `conversation.started` goes to the webhooks."""
    conversation = Conversation.objects.create(
        bot=bot,
        visitor_id=visitor_id,
        page_url=_clip_url(page_url),
        referrer=_clip_url(referrer),
        language=(language or "")[:8],
        user_agent=(user_agent or "")[:500],
        visitor_verified=visitor_verified,
        visitor_name=visitor_name,
        visitor_email=visitor_email,
    )
    conversation_started_emit(conversation=conversation)
    return conversation


def conversation_resume_or_start(
    *, bot: Bot, visitor_id: str, page_url: str = "", referrer: str = "", language: str = "", user_agent: str = ""
) -> Conversation:
    """The visitor's latest conversation with the bot, or a new one. The latest is the one started last, not the
    one written in last: a conversation the visitor left for a new one stays left, even when staff write in it."""
    conversation = (
        Conversation.objects.filter(bot=bot, visitor_id=visitor_id).order_by("-started_at", "-last_message_at").first()
    )
    if conversation is not None:
        conversation.bot = bot  # the caller's bot: every message of the socket reads it (language, lead form)
        return conversation
    return conversation_start(
        bot=bot, visitor_id=visitor_id, page_url=page_url, referrer=referrer, language=language, user_agent=user_agent
    )


def conversation_start_next(
    *, conversation: Conversation, page_url: str = "", referrer: str = "", language: str = "", user_agent: str = ""
) -> Conversation:
    """The visitor leaves `conversation` for a new one (the widget's "New conversation"). The new one keeps only who
    the visitor is (a verified identity); no handoff, takeover or lead form carries over, and the old one stays as
    it is for staff. A conversation in which nothing happened yet (no message, no request for a person, no lead)
    is as good as new: it is kept rather than left empty behind."""
    untouched = (
        Conversation.objects.filter(pk=conversation.pk, handoff_requested_at__isnull=True)
        .exclude(Exists(Message.objects.filter(conversation=OuterRef("pk"))))
        .exclude(Exists(Lead.objects.filter(conversation=OuterRef("pk"))))
        .exists()
    )
    if untouched:
        return conversation
    started = conversation_start(
        bot=conversation.bot,
        visitor_id=conversation.visitor_id,
        page_url=page_url,
        referrer=referrer,
        language=language,
        user_agent=user_agent,
        visitor_verified=conversation.visitor_verified,
        visitor_name=conversation.visitor_name,
        visitor_email=conversation.visitor_email,
    )
    started.bot = conversation.bot
    if _dashboards_open(bot_id=conversation.bot_id):
        dashboard_visitor_left_notify(conversation=conversation, following=started)
    return started


def conversation_last_message_id(*, conversation: Conversation) -> int:
    """The id of the conversation's newest message (0 when it has none). Ids only grow: every message written
    after this call, in any conversation, has a greater one."""
    return conversation.messages.aggregate(last=Max("id"))["last"] or 0


def message_payload(message: Message) -> MessagePayload:
    staff_name = None
    if message.role == Message.Role.STAFF and message.staff_user is not None:
        staff_name = staff_display_name(message.staff_user) or None
    return MessagePayload(
        id=message.id,
        role=message.role,
        text=message.text,
        citations=[Citation(n=c["n"], title=c["title"], url=c["url"]) for c in message.citations],
        status=message.status,
        feedback=message.feedback or None,
        staff_name=staff_name,
        created_at=message.created_at.isoformat(),
    )


def conversation_history(*, conversation: Conversation, limit: int = 100) -> list[MessagePayload]:
    newest = conversation.messages.select_related("staff_user__staff_member").order_by("-created_at", "-id")
    messages = list(newest[:limit])
    return [message_payload(message) for message in reversed(messages)]


def conversation_streaming_message(*, conversation: Conversation) -> Message | None:
    return conversation.messages.filter(role=Message.Role.BOT, status=Message.Status.STREAMING).first()


@transaction.atomic
def message_receive(
    *, conversation: Conversation, text: str, client_id: str = "", dispatch_answer: bool = True, answer: bool = True
) -> tuple[Message, Message | None]:
    """Save a visitor's message and, unless staff have taken over (or `answer` is off: the visitor asked for a
    person), the bot's answer to come; the answer task is queued once both are committed (unless
    `dispatch_answer` is off: the caller runs it). Returns (visitor message, bot message or None). A message
    re-sent with the same client id (a reconnect) is not saved twice. Open dashboards are told after commit."""
    # The conversation's row lock serialises every message of the conversation (two tabs, a reconnect's resend).
    # The update takes it; the read after it, a statement of its own, then sees every message committed before.
    # Asked in the locking statement itself, the questions read the snapshot taken when that statement began,
    # before the message it waited for was committed: two tabs sending at once both got an answer.
    now = timezone.now()
    # A visitor who writes again reopens a conversation staff had marked resolved (the inbox shows it again).
    # Both statements are plain SQL: as ORM queries, compiled for every message, they and the insert took saving a
    # message 3.8-4.7 ms of CPU in one process, 2.9-3.0 ms as SQL (docs/scaling-rounds.md, 2026-12-04 afternoon).
    with connection.cursor() as cursor:
        cursor.execute(_CONVERSATION_REOPEN, [now, conversation.pk])
        cursor.execute(_MESSAGE_CHECKS, [Message.Role.BOT, Message.Status.STREAMING, client_id, conversation.pk])
        row = cursor.fetchone()
    if row is None:
        raise Conversation.DoesNotExist(f"conversation {conversation.pk} no longer exists")
    found = _MessageChecks(*row)
    if found.resent_id is not None:
        existing = Message.objects.get(id=found.resent_id)
        answer_of_existing = Message.objects.filter(in_reply_to=existing).first()
        transaction.set_rollback(True)  # a resend changes nothing: the conversation's update is undone
        return existing, answer_of_existing
    if found.streaming:
        raise ConversationBusy  # the update is rolled back with it
    conversation.last_message_at, conversation.resolved_at = now, None
    visitor_id, bot_id = found.visitor_message_id, found.bot_message_id
    visitor_message = Message(
        id=visitor_id, conversation=conversation, role=Message.Role.VISITOR, text=text, client_id=client_id
    )
    bot_message = None
    if found.taken_over_by_id is None and answer:
        bot_message = Message(
            id=bot_id,
            conversation=conversation,
            role=Message.Role.BOT,
            status=Message.Status.STREAMING,
            in_reply_to=visitor_message,
        )
    # Both in one statement: their ids were taken with the checks, so the answer can point at the question.
    _messages_insert([visitor_message] if bot_message is None else [visitor_message, bot_message])
    if bot_message is not None and dispatch_answer:
        # Queued before the dashboards are told: the visitor is waiting for this one.
        transaction.on_commit(lambda: answer_message.delay(bot_message.id, question=text))
    transaction.on_commit(lambda: _dashboard_notify(visitor_message.id, bot_id=conversation.bot_id))
    message_created_emit(bot=conversation.bot, message_id=visitor_message.id)
    return visitor_message, bot_message


# The statements that save a visitor's message, besides the insert. The conversation's columns, the questions
# about its messages and the two new ids are read in one statement after the update (see `message_receive`).
# Table names are the models' own; the values (the visitor's client id among them) are parameters.
_MESSAGE, _CONVERSATION = Message._meta.db_table, Conversation._meta.db_table
_CONVERSATION_REOPEN = f"UPDATE {_CONVERSATION} SET last_message_at = %s, resolved_at = NULL WHERE id = %s"  # noqa: S608
_MESSAGE_CHECKS = (
    f"SELECT {_CONVERSATION}.taken_over_by_id,"  # noqa: S608
    # Whether one of the conversation's bot messages is still streaming.
    f" EXISTS (SELECT 1 FROM {_MESSAGE} streaming WHERE streaming.conversation_id = {_CONVERSATION}.id"
    "  AND streaming.role = %s AND streaming.status = %s),"
    # The id of the conversation's message sent with this client id (unique in a conversation), if any.
    f" (SELECT sent.id FROM {_MESSAGE} sent WHERE sent.conversation_id = {_CONVERSATION}.id"
    "  AND sent.client_id = %s AND sent.client_id <> '' LIMIT 1),"
    # Two new message ids, the visitor's message's and its answer's, in that order (ids are never reused; one left
    # unused is a gap, as a rolled-back insert would leave).
    f" nextval(pg_get_serial_sequence('{_MESSAGE}', 'id')), nextval(pg_get_serial_sequence('{_MESSAGE}', 'id'))"
    f" FROM {_CONVERSATION} WHERE {_CONVERSATION}.id = %s"
)


@dataclass(frozen=True)
class _MessageChecks:
    taken_over_by_id: int | None
    streaming: bool
    resent_id: int | None
    visitor_message_id: int
    bot_message_id: int


def _messages_insert(messages: list[Message]) -> None:
    """Insert new messages whose ids are set, in one statement, as `bulk_create` does (each field's `pre_save` and
    database value, the instances marked saved) but with SQL written once per process: bulk_create compiles its
    statement each time, and a question with its answer cost Daphne 1.3-1.7 ms of CPU that way, 0.4-0.55 ms this way
    (a throw-away timing of 300 pairs; docs/scaling-rounds.md, the round of 2026-12-04 afternoon)."""
    fields = Message._meta.concrete_fields
    params = [
        field.get_db_prep_save(field.pre_save(message, True), connection) for message in messages for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(_messages_insert_sql(len(messages)), params)
    for message in messages:
        message._state.adding, message._state.db = False, connection.alias


@functools.cache
def _messages_insert_sql(rows: int) -> str:
    """`rows` rows of every column; table and column names are the model's, the values parameters."""
    fields = Message._meta.concrete_fields
    table = connection.ops.quote_name(Message._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
    return f"INSERT INTO {table} ({columns}) VALUES {values}"  # noqa: S608


def _dashboard_notify(message_id: int, *, bot_id: int) -> None:
    # With no dashboard open there is nobody to tell, and the row it would build costs queries that a burst of
    # visitors pays in full (an eighth of Daphne's busy time at 200 messages at once). A dashboard that opens
    # later loads the list from the database.
    if _dashboards_open(bot_id=bot_id):
        dashboard_message_notify(message_id=message_id)


def _dashboards_open(*, bot_id: int) -> bool:
    """Whether a dashboard could hear of this bot's conversations. The dashboards are a convenience: when Redis
    cannot say (restarting, or too slow to answer), they are not told, and the visitor's message, already saved
    and its answer queued, is not failed for it."""
    try:
        return staff_online(bot_id=bot_id) > 0
    except redis.RedisError as error:
        logger.warning("could not tell whether dashboards of bot %s are open: %s", bot_id, error)
        return False


def message_feedback(*, conversation: Conversation, message_id: int, value: str) -> bool:
    updated = conversation.messages.filter(id=message_id, role=Message.Role.BOT).update(feedback=value)
    if updated == 1 and value == Message.Feedback.DOWN:
        feedback_negative_emit(bot=conversation.bot, message_id=message_id)
    return updated == 1


def conversation_request_handoff(*, conversation: Conversation) -> None:
    if conversation.handoff_requested_at is None:
        conversation.handoff_requested_at = timezone.now()
        conversation.save(update_fields=["handoff_requested_at"])
