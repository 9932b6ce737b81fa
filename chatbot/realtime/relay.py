"""Sending channel-layer events from synchronous worker threads.

`async_to_sync(group_send)` would start an event loop, and a Redis connection pool, per call. Instead each worker
process keeps one event loop in a background thread with one channel layer, and threads hand it their events.
Events go out through one outbox in the order they were handed over: while one batch is on its way to Redis, the
next accumulates and then leaves in one pipelined round trip (`PubSubChannelLayer.group_send_many`). One event alone
leaves at once; at load, a round trip carries the events of every answer that has something to send, and an answer's
text pieces that queued up behind it leave as one event.
"""

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

import redis
from channels.layers import get_channel_layer
from django.conf import settings

from chatbot.realtime.protocol import token_event

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0


class ChannelLayerRelay:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._layer = None
        self._outbox: list[tuple[str, dict, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name="channel-layer-relay", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._layer = get_channel_layer()
        self._ready.set()
        self._loop.run_forever()

    def group_send(self, group: str, event: dict) -> None:
        """From any thread: send `event` to `group`, after every event handed over before it; returns once Redis
        has it, and raises if it could not be sent."""
        future: Future = asyncio.run_coroutine_threadsafe(self._send(group, event), self._loop)
        future.result(timeout=SEND_TIMEOUT_S)

    async def _send(self, group: str, event: dict) -> None:
        await self.send_soon(group, event)

    def group_send_nowait(self, group: str, event: dict) -> None:
        """From any thread: queue `event` for `group` (after every event handed over before it) and return at once;
        a failure is logged. For what must not hold up the caller, such as the typing indicator before retrieval."""
        self._loop.call_soon_threadsafe(self._send_logged, group, event)

    def _send_logged(self, group: str, event: dict) -> None:
        sent = self.send_soon(group, event)
        sent.add_done_callback(
            lambda done: done.exception() and logger.warning("could not send %s: %s", event["type"], done.exception())
        )

    # On the relay's loop.

    def send_soon(self, group: str, event: dict) -> asyncio.Future:
        """Queue `event` for `group`. The returned future is done once Redis has it, or holds why it failed."""
        sent = self._loop.create_future()
        self._outbox.append((group, event, sent))
        if self._sender is None or self._sender.done():
            self._sender = self._loop.create_task(self._send_outbox())
        return sent

    async def _send_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            events = token_events_merged([(group, event) for group, event, _ in batch])
            failure: BaseException | None = None
            # Once more on a connection error: after a Redis restart the first command on a pooled connection
            # fails (before anything was published), and the next one reconnects.
            for _attempt in range(2):
                try:
                    await self._layer.group_send_many(events)
                    failure = None
                    break
                except redis.ConnectionError as error:
                    failure = error
                except Exception as error:
                    failure = error
                    break
            for _, _, sent in batch:
                if sent.done():
                    continue
                if failure is None:
                    sent.set_result(None)
                else:
                    sent.set_exception(failure)


def token_events_merged(events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """`events` in the same order, except that consecutive text pieces of one answer (nothing else sent to its
    group between them) become one token event. They are there together only when they queued up behind a round
    trip to Redis: under load the relay sends, and Daphne forwards, fewer events, and no text waits longer."""
    merged: list[tuple[str, dict]] = []
    last_token_at: dict[str, int] = {}  # group -> index in `merged` of its last event, when that is a token event
    for group, event in events:
        at = last_token_at.pop(group, None)
        if event["type"] == "chat.token":
            if at is not None and merged[at][1]["message_id"] == event["message_id"]:
                earlier = merged[at][1]
                merged[at] = (group, {**earlier, "text": earlier["text"] + event["text"]})
                last_token_at[group] = at
                continue
            last_token_at[group] = len(merged)
        merged.append((group, event))
    return merged


_relay: ChannelLayerRelay | None = None
_relay_lock = threading.Lock()


def relay() -> ChannelLayerRelay:
    global _relay
    with _relay_lock:
        if _relay is None:
            _relay = ChannelLayerRelay()
        return _relay


def coalesce_interval(base_s: float, streaming: int) -> float:
    """The flush interval of an answer's text when `streaming` answers stream in this process: `base_s` up to
    TOKEN_COALESCE_ADAPTIVE_AFTER answers, then growing with them up to TOKEN_COALESCE_MAX_MS. Each event costs the
    same CPU in the worker, Redis and Daphne whatever it carries; with many answers at once, fewer and fuller events
    keep the tokens flowing where one event per token would leave them queueing."""
    after = max(1, settings.TOKEN_COALESCE_ADAPTIVE_AFTER)
    if base_s <= 0 or streaming <= after:
        return base_s
    return max(base_s, min(base_s * streaming / after, settings.TOKEN_COALESCE_MAX_MS / 1000))


class SendBudget:
    """When an answer's next event may go: on average one per interval, with one event of slack (the generic cell
    rate algorithm). Each event sent moves a theoretical send time one interval on from itself, or from now if
    that is later; an event may go while that time is at most one interval ahead.

    Events that come about one interval apart go as they come, early or late by up to an interval; faster ones
    are held to one per interval. A strict minimum gap since the last event did not forgive lateness: one event
    sent late moved every later one of the answer as far back."""

    def __init__(self) -> None:
        self._next_at = float("-inf")

    def wait_s(self, now: float, interval_s: float) -> float:
        return max(0.0, self._next_at - interval_s - now)

    def spend(self, now: float, interval_s: float) -> None:
        self._next_at = max(self._next_at, now) + interval_s


class TokenCoalescer:
    """Relays an answer's text as it arrives: the first piece at once, then on average at most one event per flush
    interval (`interval_s`, 20 ms: below what a reader can notice; longer when many answers stream in this process,
    `coalesce_interval`), with one event of slack. Text that keeps to the interval, give or take the jitter of the
    model server and of this process, leaves as soon as it arrives; only text that comes faster waits and is joined.

    The slack matters. A model at 50 tokens/s sends a token every 20 ms: with a strict 20 ms between events, one
    event sent late (the process was busy) pushed every later token of the answer back by as much, for the rest of
    the answer, and under load these delays only added up (`SendBudget`).

    A fast model at high concurrency would otherwise cost one Redis message per token. Pending text is flushed by
    a timer on the relay's loop, so a pause in the model's output never holds back text already received. The
    worker thread feeding text never waits on Redis, and wakes the relay's loop at most once per flush. `close()`
    sends what is left and waits until all of it was sent."""

    _streaming = 0  # coalescers of this process not closed yet
    _streaming_lock = threading.Lock()

    def __init__(self, *, group: str, message_id: int, interval_s: float = 0.02, layer_relay=None) -> None:
        self.group = group
        self.message_id = message_id
        self.interval_s = interval_s
        with TokenCoalescer._streaming_lock:
            TokenCoalescer._streaming += 1
        self._closed = False
        self._relay = layer_relay or relay()
        self._loop = self._relay._loop
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._budget = SendBudget()
        self._interval_now = interval_s
        self._sends: list[asyncio.Future] = []
        self.first_sent_at: float | None = None
        self.events_sent = 0

    def feed(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self._loop.call_soon_threadsafe(self._schedule_flush)

    def close(self, timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Flush what is pending and wait until every event of this answer has reached the channel layer."""
        self.release()
        asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result(timeout=timeout_s)

    def release(self) -> None:
        """No longer count this answer as streaming (`close` does it; safe to call again, for an answer that
        failed before it could close)."""
        with TokenCoalescer._streaming_lock:
            if not self._closed:
                self._closed = True
                TokenCoalescer._streaming -= 1

    @classmethod
    def streaming(cls) -> int:
        return cls._streaming

    # Everything below runs on the relay's event loop.

    def _schedule_flush(self) -> None:
        self._interval_now = coalesce_interval(self.interval_s, TokenCoalescer._streaming)
        wait = self._budget.wait_s(time.monotonic(), self._interval_now)
        if wait <= 0:
            self._flush()
        else:
            self._loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            self._flush_scheduled = False
        if not text:
            return
        now = time.monotonic()
        self._budget.spend(now, self._interval_now)
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.events_sent += 1
        self._sends.append(self._relay.send_soon(self.group, token_event(message_id=self.message_id, text=text)))

    async def _drain(self) -> None:
        self._flush()
        results = await asyncio.gather(*self._sends, return_exceptions=True)
        self._sends.clear()
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            logger.error(
                "could not relay %d of %d token events of message %s: %s",
                len(failures), len(results), self.message_id, failures[0],
            )  # fmt: skip
