"""Noticing an answer whose worker died (SIGKILL, OOM, a lost machine) so the visitor is not left with a typing
indicator forever.

Worker side (chatbot.answers.progress): while it answers, a worker process keeps a record per answer in Redis: a
heartbeat and the text so far. The record is deleted once the answer is saved.

Web side (here): while a conversation has a streaming answer, its chat consumer watches the record (and looks at
hello). A record whose heartbeat is older than PARLEY_WORKER_LOST_AFTER_S means the worker is gone: one consumer (a
Redis SET NX lock) saves the checkpointed text as an error ("worker_lost") and tells the conversation's sockets
(`done`, then `error`). The task Celery redelivers later finds the message no longer streaming and does nothing.

Sweep: nobody may be watching (the visitor closed the tab), and an answer may never get a worker at all (its task
was lost with a killed worker before it beat, or never queued). A beat task, `lost_answers_finalise`, ends every
answer still streaming whose record is stale, or missing PARLEY_ANSWER_NOT_STARTED_AFTER_S after the message was
created, the same way and under the same lock. A watching consumer ends a never-started answer after the same wait.
"""

import asyncio
import logging
import time
import weakref

import redis
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from chatbot.answers.progress import CHECKPOINT_INTERVAL_S, RECORD_TTL_S
from chatbot.answers.texts import answer_text, text_language
from chatbot.models import Message
from chatbot.realtime.async_db import db_async
from chatbot.realtime.connections import async_client, sync_client
from chatbot.realtime.keys import answer_finalised_key, answer_progress_key, answer_progress_text_key
from chatbot.realtime.protocol import ChatDoneEvent, done_event, error_event
from chatbot.realtime.relay import relay
from chatbot.webhooks.events import message_created_emit

logger = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.5
WORKER_LOST = "worker_lost"
NOT_STARTED = "not_started"
LOST_MESSAGE = answer_text("answer_lost")  # in English; the visitor gets theirs


def _lost_after_s(given: float | None) -> float:
    """A worker silent this long is gone (settings.PARLEY_WORKER_LOST_AFTER_S unless given)."""
    return settings.PARLEY_WORKER_LOST_AFTER_S if given is None else given


def _not_started_after_s(given: float | None) -> float:
    """A queued answer no worker has started after this long is given up: the visitor asks again rather than waits
    on (settings.PARLEY_ANSWER_NOT_STARTED_AFTER_S unless given)."""
    return settings.PARLEY_ANSWER_NOT_STARTED_AFTER_S if given is None else given


# --- web side ----------------------------------------------------------------------------------------------------


def _lost(record: dict, *, lost_after_s: float | None) -> bool:
    """Whether a progress record (as Redis returns it: bytes) says its worker is gone."""
    if not record or b"beat" not in record:
        return False
    return time.time() - float(record[b"beat"]) > _lost_after_s(lost_after_s)


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", errors="replace")


async def _checkpointed_text(message_id: int) -> str:
    return _text(await async_client().get(answer_progress_text_key(message_id)))


async def answer_lost(*, message_id: int, lost_after_s: float | None = None) -> tuple[bool, str]:
    """(lost, checkpointed text). Lost: a worker started this answer and has not beaten for `lost_after_s`.
    An answer no worker has started yet (still queued) is not lost."""
    if not _lost(await async_client().hgetall(answer_progress_key(message_id)), lost_after_s=lost_after_s):
        return False, ""
    return True, await _checkpointed_text(message_id)


def _message_save_lost(message_id: int, text: str, reason: str) -> bool:
    updated = Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(
        text=text,
        status=Message.Status.ERROR,
        error_code=WORKER_LOST,
        finish_reason=reason,
        finished_at=timezone.now(),
    )
    if updated != 1:
        return False
    # Subscribers hear of every bot message that ends, as they would of an answer the pipeline saved.
    try:
        bot = Message.objects.select_related("conversation__bot").get(id=message_id).conversation.bot
        message_created_emit(bot=bot, message_id=message_id)
    except Exception:
        logger.exception("could not queue the message.created webhooks of message %s", message_id)
    return True


_save_lost = db_async(_message_save_lost)


def _message_language(message_id: int) -> str:
    """The language to tell the visitor in: their conversation's, else the bot's (English if it cannot be read: the
    answer is saved by then, and the visitor must still hear of it)."""
    try:
        row = (
            Message.objects.filter(id=message_id)
            .values_list("conversation__language", "conversation__bot__language")
            .first()
        )
    except DatabaseError:
        return "en"
    return text_language(*row) if row else "en"


_language_of = db_async(_message_language)


def _lost_events(message_id: int, text: str, language: str) -> list[dict]:
    return [
        done_event(message_id=message_id, status="error", citations=[], text=text, finalised_by="watchdog"),
        error_event("answer_failed", answer_text("answer_lost", language)),
    ]


async def answer_finalise_lost(
    *, message_id: int, text: str, group: str, channel_layer, reason: str = WORKER_LOST
) -> bool:
    """Save a lost answer's partial text as an error and tell the conversation, once across every process."""
    if not await async_client().set(answer_finalised_key(message_id), "1", nx=True, ex=RECORD_TTL_S):
        return False
    try:
        saved = await _save_lost(message_id, text, reason)
    except Exception:
        # PostgreSQL restarting, say: let the next round (here or in the sweep) try again.
        await async_client().delete(answer_finalised_key(message_id))
        raise
    if not saved:
        return False
    logger.error("the worker answering message %s was lost (%s); saved %s characters", message_id, reason, len(text))
    for event in _lost_events(message_id, text, await _language_of(message_id)):
        await channel_layer.group_send(group, event)
    await async_client().delete(answer_progress_key(message_id), answer_progress_text_key(message_id))
    return True


class _SameTurnReads:
    """Reads that the watches of one event loop ask for in the same turn of it, made together by one call of
    `fetch_many` (keys in, their results in the same order out). Every watch wakes on the same ticks (multiples of
    its interval), so with dozens of answers streaming through one Daphne process their reads share one round trip
    instead of taking one each: each read is otherwise a Redis connection checkout, or a database thread and a
    query, and a reply to parse in Python, in the process that relays every token (a seventh of Daphne's time
    with 25 long answers streaming; 125 saved-answer queries at once, every 5 s, stalled the tokens of 125 answers
    for 50-150 ms: docs/scaling-rounds.md, the round of 2026-12-05 late evening)."""

    def __init__(self, fetch_many) -> None:
        self._fetch_many = fetch_many
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._fetching: asyncio.Task | None = None

    async def read(self, key):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((key, future))
        if self._fetching is None or self._fetching.done():
            # Its first step runs after the callbacks ready now: the other watches waking on this tick.
            self._fetching = loop.create_task(self._fetch())
        return await future

    async def _fetch(self) -> None:
        # Until none is left: reads asked for while a round trip is on its way go in the next one.
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                results = await self._fetch_many([key for key, _ in waiting])
            except Exception as error:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            except BaseException:
                for _, future in [*waiting, *self._waiting]:
                    future.cancel()
                raise
            for (_, future), result in zip(waiting, results, strict=True):
                if not future.done():
                    future.set_result(result)


async def _progress_records(keys: list[str]) -> list[dict]:
    pipeline = async_client().pipeline(transaction=False)
    for key in keys:
        pipeline.hgetall(key)
    return await pipeline.execute()


@db_async
def _ended_events(message_ids: list[int]) -> list[ChatDoneEvent | None]:
    """The `chat.done` of each answer that has ended (None for one that streams), in one query."""
    ended = {
        message.id: done_event(
            message_id=message.id, status=message.status, citations=message.citations, text=message.text
        )
        for message in Message.objects.filter(id__in=set(message_ids))
        .exclude(status=Message.Status.STREAMING)
        .only("id", "status", "citations", "text")
    }
    return [ended.get(message_id) for message_id in message_ids]


_reads_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()


def _same_turn_reads(fetch_many) -> _SameTurnReads:
    reads = _reads_by_loop.setdefault(asyncio.get_running_loop(), {})
    if fetch_many not in reads:
        reads[fetch_many] = _SameTurnReads(fetch_many)
    return reads[fetch_many]


async def _progress_record_read(message_id: int) -> dict:
    """The answer's progress record (as Redis returns it: bytes), read with the other watches of this loop."""
    return await _same_turn_reads(_progress_records).read(answer_progress_key(message_id))


async def _ended_event(message_id: int) -> ChatDoneEvent | None:
    """The `chat.done` of an answer that has ended (None while it streams), read with the other watches of this
    loop."""
    return await _same_turn_reads(_ended_events).read(message_id)


async def answer_watch(
    *,
    message_id: int,
    group: str,
    channel_layer,
    interval_s: float = WATCH_INTERVAL_S,
    not_started_after_s: float | None = None,
    send_ended=None,
) -> None:
    """Watch one streaming answer until it ends or is found lost (then finalise it). Cancel when `done` arrives.

    An answer no worker has started `not_started_after_s` after the watch began is ended too (the watch begins
    when the message is acknowledged, or later at hello: never earlier than the message). An answer that ended
    without `done` reaching the watcher is sent to `send_ended` (a coroutine function taking the `chat.done`
    event: the watching socket's own channel, which does not depend on its group membership), or else to the group."""
    give_up_at = time.monotonic() + _not_started_after_s(not_started_after_s)
    missing_since = time.monotonic()
    checks = 0

    async def ended_sent() -> bool:
        if (ended := await _ended_event(message_id)) is None:
            return False
        if send_ended is not None:
            await send_ended(ended)
        else:
            await channel_layer.group_send(group, ended)
        return True

    while True:
        try:
            record = await _progress_record_read(message_id)
            if _lost(record, lost_after_s=None):
                text = await _checkpointed_text(message_id)
                if await answer_finalise_lost(
                    message_id=message_id, text=text, group=group, channel_layer=channel_layer
                ):
                    return
                # Ended by someone else meanwhile (the sweep, or a worker that finished after all): make sure that
                # end reaches this socket, or keep watching.
                if await ended_sent():
                    return
            now = time.monotonic()
            if record:
                missing_since = None
            elif missing_since is None:
                missing_since = now
            # Missing for more than a checkpoint round: not just a Redis restart the worker has yet to rewrite.
            if missing_since is not None and now > give_up_at and now - missing_since > 2 * CHECKPOINT_INTERVAL_S:
                await answer_finalise_lost(
                    message_id=message_id, text="", group=group, channel_layer=channel_layer, reason=NOT_STARTED
                )
                return
            checks += 1
            # Every few seconds: an answer may end without this socket seeing `done` (published while Redis
            # restarted, or while this process was not subscribed to the group): send it again, or the typing
            # indicator stays. A socket that did see it shows the same final text again.
            if checks % 10 == 0 and await ended_sent():
                return
        except (redis.RedisError, OSError) as error:
            logger.warning("watchdog of message %s cannot reach Redis: %s", message_id, error)
        except Exception:
            # PostgreSQL restarting, say: keep watching, the next round may succeed.
            logger.exception("watchdog of message %s failed a round", message_id)
        # On the next multiple of the interval, as every other watch of this process: their reads share a round trip.
        await asyncio.sleep(interval_s - time.monotonic() % interval_s)


# --- sweep (a beat task) -----------------------------------------------------------------------------------------


def _answer_finalise_lost_sync(*, message_id: int, text: str, group: str, reason: str) -> bool:
    """answer_finalise_lost for a worker thread: the same lock, save and events."""
    client = sync_client()
    if not client.set(answer_finalised_key(message_id), "1", nx=True, ex=RECORD_TTL_S):
        return False
    try:
        saved = _message_save_lost(message_id, text, reason)
    except Exception:
        client.delete(answer_finalised_key(message_id))
        raise
    if not saved:
        return False
    logger.error("the worker answering message %s was lost (%s); saved %s characters", message_id, reason, len(text))
    relay().group_send_many([(group, event) for event in _lost_events(message_id, text, _message_language(message_id))])
    client.delete(answer_progress_key(message_id), answer_progress_text_key(message_id))
    return True


def _records(message_ids: list[int]) -> dict[int, dict]:
    pipe = sync_client().pipeline(transaction=False)
    for message_id in message_ids:
        pipe.hgetall(answer_progress_key(message_id))
    return dict(zip(message_ids, pipe.execute(), strict=True))


def lost_answers_finalise(
    *,
    lost_after_s: float | None = None,
    not_started_after_s: float | None = None,
    recheck_after_s: float = 2 * CHECKPOINT_INTERVAL_S,
) -> list[int]:
    """End every answer still streaming whose worker is gone, whether or not a visitor watches it: its record's
    heartbeat is older than `lost_after_s` (the checkpointed text is kept), or it has no record
    `not_started_after_s` after the message was created (no worker ever started it). Returns the ids ended.

    A missing record is read again after `recheck_after_s`: a worker rewrites its records within a checkpoint
    interval of a Redis restart, and one starting the answer right now has written its record by then."""
    not_started_after_s = _not_started_after_s(not_started_after_s)
    streaming = {
        message.id: message
        for message in Message.objects.filter(status=Message.Status.STREAMING)
        .select_related("conversation")
        .only("id", "created_at", "conversation__id")
    }
    if not streaming:
        return []
    now = timezone.now()
    lost: dict[int, str] = {}
    unstarted: list[int] = []
    for message_id, record in _records(list(streaming)).items():
        if _lost(record, lost_after_s=lost_after_s):
            lost[message_id] = _text(sync_client().get(answer_progress_text_key(message_id)))
        elif not record and (now - streaming[message_id].created_at).total_seconds() > not_started_after_s:
            unstarted.append(message_id)
    if unstarted:
        time.sleep(recheck_after_s)
        unstarted = [message_id for message_id, record in _records(unstarted).items() if not record]
    ended = []
    for message_id, text, reason in [
        *((message_id, text, WORKER_LOST) for message_id, text in lost.items()),
        *((message_id, "", NOT_STARTED) for message_id in unstarted),
    ]:
        group = streaming[message_id].conversation.group_name
        if _answer_finalise_lost_sync(message_id=message_id, text=text, group=group, reason=reason):
            ended.append(message_id)
    return ended
