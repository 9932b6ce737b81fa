"""Sending channel-layer events from synchronous worker threads.

`async_to_sync(group_send)` would start an event loop, and a Redis connection pool, per call. Instead each process
keeps one relay thread with a blocking Redis client (`GroupPublisher`), and threads hand it their events. Events go
out through one outbox in the order they were handed over: while one batch is on its way to Redis, the next
accumulates and then leaves in one pipelined round trip. One event alone leaves at once; at load, a round trip
carries the events of every answer that has something to send, and an answer's text pieces that queued up behind
it leave as one event. An answer's text is fed to its coalescer on the process's model-stream reader thread
(inference.stream_reader), which must never wait on Redis: the relay's thread sends it. A thread that waits
anyway (an answer closing its coalescer) sends what waits itself (`send_queued`), when no batch is on its way.

The thread also keeps the timers of the answers' coalescers (`TokenCoalescer`), and how late it runs them: how long
the process makes text that is due wait for the interpreter and the cores (`Lateness`), the coalescers' sign of
load. It was an asyncio loop with redis-py's asynchronous client before: a hop onto the loop for every piece of
text, a task per batch and a future per event cost the worker more CPU for each token it streamed
(docs/scaling-rounds.md, the fourth round).
"""

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import redis
from channels.layers import get_channel_layer
from django.conf import settings

from chatbot.realtime.protocol import token_event

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0


class ChannelLayerRelay:
    def __init__(self) -> None:
        self._publisher = get_channel_layer().publisher(socket_timeout_s=SEND_TIMEOUT_S)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._outbox: list[tuple[str, dict, Future | EventsSent]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []  # a heap of (when, order, callback)
        self._timer_order = itertools.count()
        self.lateness = Lateness()
        self._sending = False  # a batch is on its way to Redis (from the relay's thread or a caller's)
        self._thread = threading.Thread(target=self._run, name="channel-layer-relay", daemon=True)
        self._thread.start()

    def group_send(self, group: str, event: dict) -> None:
        """From any thread: send `event` to `group`, after every event handed over before it; returns once Redis
        has it, and raises if it could not be sent."""
        self.send_soon(group, event).result(timeout=SEND_TIMEOUT_S)

    def group_send_many(self, events: list[tuple[str, dict]]) -> None:
        """`group_send` for several (group, event) in this order, in one round trip."""
        for sent in self.send_all_soon(events):
            sent.result(timeout=SEND_TIMEOUT_S)

    def group_send_nowait(self, group: str, event: dict) -> None:
        """From any thread: queue `event` for `group` (after every event handed over before it) and return at once;
        a failure is logged. For what must not hold up the caller, such as the typing indicator before retrieval."""
        self.send_soon(group, event).add_done_callback(
            lambda sent: sent.exception() and logger.warning("could not send %s: %s", event["type"], sent.exception())
        )

    def send_soon(self, group: str, event: dict) -> Future:
        """From any thread: queue `event` for `group`. The returned future is done once Redis has it, or holds why
        it failed."""
        return self.send_all_soon([(group, event)])[0]

    def send_all_soon(self, events: list[tuple[str, dict]]) -> list[Future]:
        """`send_soon` for several (group, event), in this order."""
        sends = [Future() for _ in events]
        with self._lock:
            self._outbox.extend((group, event, sent) for (group, event), sent in zip(events, sends, strict=True))
            self._wake.notify()
        return sends

    def queue(self, group: str, event: dict, sent: "EventsSent") -> None:
        """From any thread: put `event` for `group` in the outbox without waking the relay's thread, counted in
        `sent` until it is sent; the caller then calls `wake`, or `send_queued` if it may wait on Redis (outside its
        own locks). For an answer's text: under its own lock, so that its pieces reach the outbox in order."""
        sent.add()
        with self._lock:
            self._outbox.append((group, event, sent))

    def send_queued(self) -> None:
        """Send what waits in the outbox from this thread, in one round trip, unless a batch is on its way: then
        what waits goes with the next batch, which the relay's thread sends. For a thread that waits for its events
        to be sent anyway: it saves waking the relay's thread."""
        with self._lock:
            if self._sending or not self._outbox:
                return
            self._sending = True
            batch, self._outbox = self._outbox, []
        self._send_batch(batch)

    def wake(self) -> None:
        """Have the relay's thread send what waits in the outbox (`queue`d by a thread that does not send it)."""
        with self._lock:
            self._wake.notify()

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the relay's thread at `when` (`time.monotonic()`), before the events handed over
        after that moment."""
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._timer_order), callback))
            self._wake.notify()

    # On the relay's thread.

    def _run(self) -> None:
        while True:
            for callback in self._due():
                try:
                    callback()
                except Exception:
                    logger.exception("relay timer failed")
            with self._lock:
                if self._sending or not self._outbox:
                    continue
                self._sending = True
                batch, self._outbox = self._outbox, []
            self._send_batch(batch)
            del batch  # not kept while the thread waits for the next one

    def _due(self) -> list[Callable[[], None]]:
        """Wait until a timer is due or an event waits with no batch on its way; the timers due by then, in
        order."""
        with self._lock:
            while True:
                now = time.monotonic()
                due = []
                while self._timers and self._timers[0][0] <= now:
                    when, _, callback = heapq.heappop(self._timers)
                    self.lateness.observe(now - when)
                    due.append(callback)
                if due or (self._outbox and not self._sending):
                    return due
                self._wake.wait(self._timers[0][0] - now if self._timers else None)

    def _send_batch(self, batch: list[tuple[str, dict, "Future | EventsSent"]]) -> None:
        """Send `batch` (taken with `_sending` set, on any thread), then let the next one go: the relay's thread
        sends what came meanwhile."""
        try:
            self._send(batch)
        finally:
            with self._lock:
                self._sending = False
                if self._outbox:
                    self._wake.notify()

    def _send(self, batch: list[tuple[str, dict, "Future | EventsSent"]]) -> None:
        failure: BaseException | None = None
        # Once more on a connection error: after a Redis restart the first command on a pooled connection fails
        # (before anything was published), and the next one reconnects.
        for _attempt in range(2):
            try:
                self._publisher.group_send_many(token_events_merged([(group, event) for group, event, _ in batch]))
                failure = None
                break
            except redis.ConnectionError as error:
                failure = error
            except Exception as error:
                failure = error
                break
        for _, _, sent in batch:
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


class EventsSent:
    """The sends of one answer's events: how many are still on their way, and how many failed. One record per answer
    instead of a `Future` per event: an answer kept each event's future until it closed, about twelve objects the
    garbage collector tracks per event, and at 100 answers streaming those made the worker's full collections come
    every 1-2 s and take up to 120 ms, every stream of the process standing still meanwhile (docs/scaling-rounds.md, the
    round of 2026-12-04 night)."""

    def __init__(self) -> None:
        self._all_sent = threading.Condition(threading.Lock())
        self._on_their_way = 0
        self.failures = 0
        self.first_failure: BaseException | None = None

    def add(self) -> None:
        with self._all_sent:
            self._on_their_way += 1

    def set_result(self, _result: None) -> None:
        self._settle(None)

    def set_exception(self, error: BaseException) -> None:
        self._settle(error)

    def wait(self, timeout_s: float) -> None:
        """Until every event counted has been sent or has failed; `TimeoutError` after `timeout_s`."""
        with self._all_sent:
            if not self._all_sent.wait_for(lambda: self._on_their_way == 0, timeout_s):
                raise TimeoutError(f"{self._on_their_way} events not sent within {timeout_s} s")

    def _settle(self, error: BaseException | None) -> None:
        with self._all_sent:
            self._on_their_way -= 1
            if error is not None:
                self.failures += 1
                self.first_failure = self.first_failure or error
            if self._on_their_way == 0:
                self._all_sent.notify_all()


class Lateness:
    """How late the relay's thread runs its timers, as a moving average in milliseconds. A timer runs late when the
    process is busy: its thread waits for the interpreter (the other threads preparing questions, reading streams)
    and for a core (the other processes). Under a burst of questions it was 3-5 ms late at the median and 11-40 ms
    at the 90th-99th percentile; with 50 answers streaming and nothing else it was 0.1 ms at the median and under 2
    ms at the 90th percentile (a throw-away log of it in bench.run's relay steps, one worker:
    docs/scaling-rounds.md, the second round of 2026-12-04)."""

    WEIGHT = 0.05  # of each timer: about the last 20 timers count, a few milliseconds' worth at load

    def __init__(self) -> None:
        self.ms = 0.0

    def observe(self, late_s: float) -> None:
        self.ms += self.WEIGHT * (late_s * 1000 - self.ms)

    def running_late(self) -> bool:
        return self.ms >= settings.TOKEN_COALESCE_LATE_MS


def coalesce_interval(base_s: float, streaming: int, running_late: bool) -> float:
    """The flush interval of an answer's text when `streaming` answers stream in this process: `base_s` while the
    process keeps up (`Lateness`) or streams at most TOKEN_COALESCE_ADAPTIVE_AFTER answers; while it runs late with
    more, growing with their number up to TOKEN_COALESCE_MAX_MS. Each event costs the same CPU in the worker, Redis
    and Daphne whatever it carries: under load, fewer and fuller events keep the tokens flowing where one event per
    token would leave them queueing. A process that keeps up sends as the text comes: with a model at 50 tokens/s, a
    40 ms interval by the number of answers alone had every other token wait about 20 ms, a token lag p95 of 38 ms
    with 50 answers streaming where 5-18 ms was possible (docs/scaling-rounds.md, the second round of 2026-12-04)."""
    after = max(1, settings.TOKEN_COALESCE_ADAPTIVE_AFTER)
    if base_s <= 0 or streaming <= after or not running_late:
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
    interval (`interval_s`, 20 ms: below what a reader can notice; longer when many answers stream in a process
    that runs late, `coalesce_interval`), with one event of slack. Text that keeps to the interval, give or take the
    jitter of the model server and of this process, leaves as soon as it arrives; only text that comes faster waits
    and is joined.

    The slack matters. A model at 50 tokens/s sends a token every 20 ms: with a strict 20 ms between events, one
    event sent late (the process was busy) pushed every later token of the answer back by as much, for the rest of
    the answer, and under load these delays only added up (`SendBudget`).

    A fast model at high concurrency would otherwise cost one Redis message per token. Text that may go now is
    put in the relay's outbox and the relay's thread woken (`feed` runs on the model-stream reader thread, which
    must not wait on Redis); text that must wait is flushed by a timer on the relay's thread, so a pause in the
    model's output never holds back text already received. `close()` sends what is left and waits until all of it
    was sent."""

    _streaming = 0  # coalescers of this process not closed yet
    _streaming_lock = threading.Lock()

    def __init__(self, *, group: str, message_id: int, interval_s: float = 0.02) -> None:
        self.group = group
        self.message_id = message_id
        self.interval_s = interval_s
        with TokenCoalescer._streaming_lock:
            TokenCoalescer._streaming += 1
        self._closed = False
        self._relay = relay()
        # Held while text is taken and handed to the outbox: the relay's timer and the feeding thread both flush,
        # and their events must reach the outbox in the order of their text.
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._budget = SendBudget()
        self._sent = EventsSent()
        self.first_sent_at: float | None = None
        self.events_sent = 0

    def feed(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self._pending.append(text)
            if self._flush_scheduled:
                return
            now = time.monotonic()
            interval = self._interval()
            wait = self._budget.wait_s(now, interval)
            if wait <= 0:
                self._flush_locked(now, interval)
            else:
                self._flush_scheduled = True
        if wait <= 0:
            self._relay.wake()
        else:
            self._relay.call_at(now + wait, self._flush)

    def close(self, timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Flush what is pending and wait until every event of this answer has reached the channel layer."""
        self.release()
        with self._lock:
            self._flush_locked(time.monotonic(), self.interval_s)
        self._relay.send_queued()  # this thread waits for it anyway
        self._sent.wait(timeout_s)
        if self._sent.failures:
            logger.error(
                "could not relay %d of %d token events of message %s: %s",
                self._sent.failures, self.events_sent, self.message_id, self._sent.first_failure,
            )  # fmt: skip

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

    def _flush(self) -> None:
        """The timer's flush, on the relay's thread: the thread sends what every due timer queued, in one batch,
        once they have all run."""
        with self._lock:
            self._flush_scheduled = False
            self._flush_locked(time.monotonic(), self._interval())

    def _interval(self) -> float:
        return coalesce_interval(self.interval_s, TokenCoalescer._streaming, self._relay.lateness.running_late())

    def _flush_locked(self, now: float, interval_s: float) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._budget.spend(now, interval_s)
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.events_sent += 1
        self._relay.queue(self.group, token_event(message_id=self.message_id, text=text), self._sent)
