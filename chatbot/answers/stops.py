"""The visitor's Stop button: a request in Redis that the worker streaming the answer hears at once, whichever process
the visitor's socket is on. The request is kept as a key (for an answer whose task has not started yet) and
published on one channel that every worker process listens to: no process polls Redis while answers stream."""

import logging
import threading
import time

import redis
from django.conf import settings

from chatbot.realtime.connections import async_client, sync_client
from chatbot.realtime.keys import answer_stop_channel, answer_stop_key
from inference.client import stop_checks_now

logger = logging.getLogger(__name__)

STOP_TTL_S = 600
RECONNECT_AFTER_S = 1.0


async def answer_request_stop(*, message_id: int) -> None:
    """From the visitor's socket: ask the worker streaming this answer to stop."""
    async with async_client().pipeline(transaction=False) as pipe:
        pipe.set(answer_stop_key(message_id), "1", ex=STOP_TTL_S)
        pipe.publish(answer_stop_channel(), str(message_id))
        await pipe.execute()


def answer_stop_requested(*, message_id: int) -> bool:
    return bool(sync_client().exists(answer_stop_key(message_id)))


def stop_requested_queue(pipe: redis.client.Pipeline, *, message_id: int) -> None:
    """Queue `answer_stop_requested` on a pipeline: its reply is the number of stop keys found (0 or 1)."""
    pipe.exists(answer_stop_key(message_id))


class StopRequests:
    """Stop requests for the answers this process is streaming. One thread listens to the stop channel, sets a
    flag and has the model client's open streams ask at once (`stop_checks_now`); an answer's `should_stop` (asked
    then, at every token, and every STOP_WATCH_POLL_S while a stream waits) only reads it."""

    def __init__(self) -> None:
        self._requested: dict[int, bool] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, message_id: int) -> None:
        """Hear the stop requests for this answer from now on. One that came while the task was queued is the
        caller's to read, after this call (`stop_requested_queue`, on the pipeline of its other checks), and to
        pass on with `heard_before`."""
        with self._lock:
            self._requested[message_id] = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="answer-stop-requests", daemon=True)
                self._thread.start()

    def heard_before(self, message_id: int) -> None:
        """A stop request for this watched answer was found in Redis (it came before the answer was watched)."""
        self._stop(message_id)

    def forget(self, message_id: int) -> None:
        with self._lock:
            self._requested.pop(message_id, None)

    def requested(self, message_id: int) -> bool:
        return self._requested.get(message_id, False)

    def _check(self, message_ids: list[int]) -> None:
        if not message_ids:
            return
        try:
            found = sync_client().mget([answer_stop_key(message_id) for message_id in message_ids])
        except redis.RedisError as error:
            # Not being able to stop is better than losing the answer.
            logger.warning("could not check for stop requests: %s", error)
            return
        heard = False
        with self._lock:
            for message_id, value in zip(message_ids, found, strict=True):
                if value is not None and message_id in self._requested:
                    self._requested[message_id] = True
                    heard = True
        if heard:
            stop_checks_now()

    def _heard(self, data: bytes) -> None:
        try:
            message_id = int(data)
        except (TypeError, ValueError):
            return
        self._stop(message_id)

    def _stop(self, message_id: int) -> None:
        """Stop this answer if this process streams it: its streams ask `should_stop` at once."""
        with self._lock:
            if message_id not in self._requested:
                return
            self._requested[message_id] = True
        stop_checks_now()

    def _run(self) -> None:
        outage = False
        while True:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, health_check_interval=30)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(answer_stop_channel())
                # What was requested while this process was not listening (its start, a Redis restart).
                with self._lock:
                    watched = list(self._requested)
                self._check(watched)
                if outage:
                    logger.warning("listening to stop requests again")
                    outage = False
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._heard(message["data"])
            except (redis.RedisError, OSError) as error:
                # Once per outage, not once per attempt.
                if not outage:
                    logger.warning(
                        "cannot hear stop requests (%s); trying again every %.0f s", error, RECONNECT_AFTER_S
                    )
                    outage = True
            finally:
                pubsub.close()
                client.close()
            time.sleep(RECONNECT_AFTER_S)


# The one of this process.
stop_requests = StopRequests()
