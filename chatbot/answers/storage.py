"""The bot message an answer task answers: loaded with its conversation, its bot and its question in one statement,
the conversation's earlier messages read for a follow-up, and the outcome saved in one statement, all with SQL
written once per process.

Django compiles a query's SQL each time it runs. For this one (four models' hundred columns, two levels of
`select_related` and two EXISTS), compiling cost 1.9-2.1 ms of the worker's CPU for every answer, before the first
token, against 0.2 ms to run the statement (a throw-away timing of 300 loads; docs/scaling-rounds.md, the round of
2026-12-04 afternoon). The statement is the one `select_related` wrote; the instances are made as the ORM makes
them: `Model.from_db` with every concrete column, each value through its field's database converters (the JSON
fields' `from_db_value`), the related instances set through their foreign keys. The outcome is saved as
`QuerySet.update` saves it: each value through its field's `get_db_prep_save`.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Model

from chatbot.models import ApprovedAnswer, Bot, Conversation, Message


class _Columns:
    """Some of a model's fields, read from a row from `start` on: their values as the ORM reads them (each through
    the converters the ORM runs on it: the backend's, then the field's, such as a JSON field's `from_db_value`)."""

    def __init__(self, model: type[Model], fields, *, start: int = 0) -> None:
        self.model, self.start, self.end = model, start, start + len(fields)
        self.attnames = [field.attname for field in fields]
        self._converters: list[tuple[int, object, list[Callable]]] = [
            (position, field.cached_col, converters)
            for position, field in enumerate(fields)
            if (converters := connection.ops.get_db_converters(field.cached_col) + field.get_db_converters(connection))
        ]

    def values(self, row: tuple) -> list:
        values = list(row[self.start : self.end])
        for position, column, converters in self._converters:
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        return values

    def instance(self, row: tuple) -> Model | None:
        """The model's instance (every concrete field read) from its slice of `row`; None for a left join that
        found nothing."""
        if row[self.start] is None:  # the primary key comes first
            return None
        return self.model.from_db(connection.alias, self.attnames, self.values(row))


@dataclass(frozen=True)
class _Statement:
    sql: str
    message: _Columns
    conversation: _Columns
    bot: _Columns
    question: _Columns


def answer_message_load(message_id: int) -> Message | None:
    """Bot message `message_id` while it is still streaming (None otherwise), with `conversation`, `conversation.bot`
    and `in_reply_to` loaded, and two answers read in the same statement: `has_earlier_messages` (the conversation
    holds a message older than the question) and `bot_has_approved_answers`."""
    statement = _statement()
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [message_id, Message.Status.STREAMING])
        row = cursor.fetchone()
    if row is None:
        return None
    message = statement.message.instance(row)
    conversation = statement.conversation.instance(row)
    conversation.bot = statement.bot.instance(row)
    message.conversation = conversation
    message.in_reply_to = statement.question.instance(row)
    message.has_earlier_messages, message.bot_has_approved_answers = row[statement.question.end :]
    return message


@functools.cache
def _statement() -> _Statement:
    """The SQL, written from the models' own metadata the first time it is needed."""
    parts: list[tuple[str, _Columns]] = []
    for alias, model in (("message", Message), ("conversation", Conversation), ("bot", Bot), ("question", Message)):
        parts.append((alias, _Columns(model, model._meta.concrete_fields, start=parts[-1][1].end if parts else 0)))
    quote = connection.ops.quote_name
    select = ", ".join(
        f"{alias}.{quote(field.column)}" for alias, columns in parts for field in columns.model._meta.concrete_fields
    )
    message, conversation, bot = Message._meta.db_table, Conversation._meta.db_table, Bot._meta.db_table
    approved = ApprovedAnswer._meta.db_table
    sql = (
        f"SELECT {select},"  # noqa: S608 - table and column names from the models; the values are parameters
        # The conversation holds a message older than the question: a follow-up, whose history is read.
        f" EXISTS (SELECT 1 FROM {message} earlier WHERE earlier.conversation_id = message.conversation_id"
        "  AND earlier.created_at < question.created_at),"
        # Most bots have no approved answers: their questions skip looking for one.
        f" EXISTS (SELECT 1 FROM {approved} approved WHERE approved.bot_id = conversation.bot_id)"
        f" FROM {message} message"
        f" JOIN {conversation} conversation ON conversation.id = message.conversation_id"
        f" JOIN {bot} bot ON bot.id = conversation.bot_id"
        f" LEFT JOIN {message} question ON question.id = message.in_reply_to_id"
        " WHERE message.id = %s AND message.status = %s"
    )
    return _Statement(sql, *(columns for _, columns in parts))


def answer_message_finish(message_id: int, **values) -> bool:
    """Save the answer's outcome (`values`, by field name) on bot message `message_id` if it is still streaming
    (the watchdog may have ended it already: this worker was thought lost); whether it was saved."""
    sql, fields = _finish_statement(tuple(values))
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, message_id, Message.Status.STREAMING])
        return cursor.rowcount > 0


@functools.cache
def _finish_statement(names: tuple[str, ...]) -> tuple[str, list]:
    fields = [Message._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    table = quote(Message._meta.db_table)
    return f"UPDATE {table} SET {assignments} WHERE id = %s AND status = %s", fields  # noqa: S608


@dataclass(frozen=True)
class EarlierMessage:
    role: str
    text: str
    retrieved: list | None  # the newest bot message's retrieval trace (`pipeline._trace`); None for the others


def conversation_messages_before(*, conversation_id: str, before: datetime, limit: int) -> list[EarlierMessage]:
    """The conversation's last `limit` messages created before `before`, newest first, without those still
    streaming or ended in an error. Only what a follow-up needs: not the saved prompts (each holds its passages),
    and the retrieval trace of the newest answer alone (each trace holds its passages' text: the older ones were
    most of the statement's bytes and of its JSON to parse in a long conversation)."""
    sql, columns = _messages_before_statement()
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                Message.Role.BOT,
                Message.Role.BOT,
                conversation_id,
                before,
                Message.Status.STREAMING,
                Message.Status.ERROR,
                limit,
            ],
        )
        return [EarlierMessage(*columns.values(row)) for row in cursor.fetchall()]


@functools.cache
def _messages_before_statement() -> tuple[str, _Columns]:
    fields = [Message._meta.get_field(name) for name in ("role", "text", "retrieved")]
    role, text, retrieved = (connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(Message._meta.db_table)
    # The window counts the answers from the newest down as the rows are read (in the statement's own order, so
    # it stops with the LIMIT): the first one's trace is sent, the others' are not read from their rows.
    newest_answer = f"{role} = %s AND count(*) FILTER (WHERE {role} = %s) OVER (ORDER BY created_at DESC, id DESC) = 1"
    sql = (
        f"SELECT {role}, {text}, CASE WHEN {newest_answer} THEN {retrieved} END FROM {table}"  # noqa: S608
        " WHERE conversation_id = %s AND created_at < %s AND status NOT IN (%s, %s)"
        " ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    return sql, _Columns(Message, fields)
