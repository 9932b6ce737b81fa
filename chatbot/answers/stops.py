"""The visitor's Stop button: a request in Redis that the worker streaming the answer notices within
STOP_CHECK_INTERVAL_S, whichever process the visitor's socket is on."""

import logging
import threading
import time

import redis

from chatbot.realtime.connections import async_client, sync_client
from chatbot.realtime.keys import answer_stop_key

logger = logging.getLogger(__name__)

STOP_TTL_S = 600
STOP_CHECK_INTERVAL_S = 0.02


async def answer_request_stop(*, message_id: int) -> None:
    """From the visitor's socket: ask the worker streaming this answer to stop."""
    await async_client().set(answer_stop_key(message_id), "1", ex=STOP_TTL_S)


def answer_stop_requested(*, message_id: int) -> bool:
    return bool(sync_client().exists(answer_stop_key(message_id)))


class StopRequests:
    """Stop requests for the answers this process is streaming. One thread reads them all from Redis in one round
    trip every STOP_CHECK_INTERVAL_S; an answer's `should_stop` (polled by the model client every 10 ms and at
    every token) only reads a flag. Fifty answers asking Redis for themselves cost a worker fifty times as many
    round trips, and the GIL time that goes with them."""

    def __init__(self) -> None:
        self._requested: dict[int, bool] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, message_id: int) -> None:
        with self._changed:
            self._requested[message_id] = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="answer-stop-requests", daemon=True)
                self._thread.start()
            self._changed.notify()
        self._check([message_id])  # a stop that came while the task was queued counts at once

    def forget(self, message_id: int) -> None:
        with self._changed:
            self._requested.pop(message_id, None)

    def requested(self, message_id: int) -> bool:
        return self._requested.get(message_id, False)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._requested:
                    self._changed.wait()
                pending = [message_id for message_id, stop in self._requested.items() if not stop]
            if pending:
                self._check(pending)
            time.sleep(STOP_CHECK_INTERVAL_S)

    def _check(self, message_ids: list[int]) -> None:
        try:
            found = sync_client().mget([answer_stop_key(message_id) for message_id in message_ids])
        except redis.RedisError as error:
            # Not being able to stop is better than losing the answer.
            logger.warning("could not check for stop requests: %s", error)
            return
        with self._changed:
            for message_id, value in zip(message_ids, found, strict=True):
                if value is not None and message_id in self._requested:
                    self._requested[message_id] = True


# The one of this process.
stop_requests = StopRequests()
