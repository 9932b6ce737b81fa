"""Sending channel-layer events from synchronous worker threads.

`async_to_sync(group_send)` would start an event loop, and a Redis connection pool, per call. Instead each worker
process keeps one event loop in a background thread with one channel layer, and threads hand it their sends.
A send returns once Redis has the event, so the events of one answer leave in order.
"""

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future

import redis
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
# Benchmark instrumentation (bench/answer_latency.py): each chat.token event also carries "received_at", the
# time.monotonic() at which this process got the event's oldest text from the model. The consumer forwards only
# message_id and text, so visitors never see it.
RELAY_TIMING = os.environ.get("PARLEY_RELAY_TIMING") == "1"


class ChannelLayerRelay:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._layer = None
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
        # Once more on a connection error: after a Redis restart the first command on a pooled connection fails,
        # and the next one reconnects.
        for attempt in (1, 2):
            future: Future = asyncio.run_coroutine_threadsafe(self._layer.group_send(group, event), self._loop)
            try:
                future.result(timeout=SEND_TIMEOUT_S)
                return
            except redis.ConnectionError:
                if attempt == 2:
                    raise


_relay: ChannelLayerRelay | None = None
_relay_lock = threading.Lock()


def relay() -> ChannelLayerRelay:
    global _relay
    with _relay_lock:
        if _relay is None:
            _relay = ChannelLayerRelay()
        return _relay


class TokenCoalescer:
    """Relays an answer's text as it arrives: the first piece at once, then at most one event per `interval_s`.

    A fast model at high concurrency would otherwise cost one Redis message per token; 20 ms is below what a
    reader can notice. Pending text is flushed by a timer on the relay's loop, so a pause in the model's output
    never holds back text already received. Events of one answer are sent one after another, in order; the
    worker thread feeding text never waits on Redis. `close()` sends what is left and waits for it."""

    def __init__(self, *, group: str, message_id: int, interval_s: float = 0.02, layer_relay=None) -> None:
        self.group = group
        self.message_id = message_id
        self.interval_s = interval_s
        self._relay = layer_relay or relay()
        self._loop = self._relay._loop
        self._pending: list[str] = []
        self._pending_since = 0.0
        self._last_sent = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._send_lock: asyncio.Lock | None = None
        self._sends: list[asyncio.Future] = []
        self.first_sent_at: float | None = None
        self.events_sent = 0

    def feed(self, text: str) -> None:
        if text:
            self._loop.call_soon_threadsafe(self._on_text, text, time.monotonic())

    def close(self, timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Flush what is pending and wait until every event of this answer has reached the channel layer."""
        asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result(timeout=timeout_s)

    # Everything below runs on the relay's event loop.

    def _on_text(self, text: str, received_at: float) -> None:
        if not self._pending:
            self._pending_since = received_at
        self._pending.append(text)
        if self._timer is not None:
            return
        wait = self.interval_s - (time.monotonic() - self._last_sent)
        if self.first_sent_at is None or wait <= 0:
            self._flush()
        else:
            self._timer = self._loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        now = time.monotonic()
        self._last_sent = now
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.events_sent += 1
        event = {"type": "chat.token", "message_id": self.message_id, "text": text}
        if RELAY_TIMING:
            event["received_at"] = self._pending_since
        self._sends.append(self._loop.create_task(self._send_in_order(event)))

    async def _send_in_order(self, event: dict) -> None:
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            try:
                await self._relay._layer.group_send(self.group, event)
            except Exception:
                logger.exception("could not relay tokens of message %s", self.message_id)

    async def _drain(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        if self._sends:
            await asyncio.gather(*self._sends)
            self._sends.clear()
