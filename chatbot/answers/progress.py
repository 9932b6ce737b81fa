"""The worker's side of the answer watchdog (chatbot.answers.watchdog): while it answers, a worker process keeps a
record per answer in Redis, a heartbeat and the text so far, written by one background thread at most every
CHECKPOINT_INTERVAL_S (never per token, never to the database; the text is appended to, never rewritten). The
record is deleted once the answer is saved; if the process dies, the record goes stale and the web side ends the
answer with what was checkpointed.
"""

import logging
import threading
import time

import redis
from celery.signals import task_received

from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import answer_progress_key, answer_progress_text_key

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.5
RECORD_TTL_S = 3600
# The answer task's registered name (chatbot.answers.tasks keeps it as it always was).
ANSWER_TASK_NAME = "chatbot.tasks.answer_message"


class AnswerProgress:
    """One answer being written in this process: `add` text as it arrives (memory only); `finish` once saved."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._parts.append(text)

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)

    def abandon(self) -> None:
        """Stop beating and leave the record: the web side will find the answer lost and end it."""
        _checkpointer().remove(self)

    def finish(self) -> None:
        _checkpointer().remove(self)
        try:
            sync_client().delete(answer_progress_key(self.message_id), answer_progress_text_key(self.message_id))
        except redis.RedisError as error:
            logger.warning("could not clear the progress record of message %s: %s", self.message_id, error)


class _Checkpointer:
    """One thread per process writes every running answer's heartbeat and text, in one pipeline per round."""

    def __init__(self) -> None:
        self._answers: dict[int, AnswerProgress] = {}
        self._written: dict[int, int] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="answer-checkpointer", daemon=True).start()

    def add(self, progress: AnswerProgress) -> None:
        with self._lock:
            self._answers[progress.message_id] = progress
        self._wake.set()  # the first beat at once: the web side knows the answer has a live worker

    def remove(self, progress: AnswerProgress) -> None:
        with self._lock:
            self._answers.pop(progress.message_id, None)
            self._written.pop(progress.message_id, None)

    def _run(self) -> None:
        beaten_at = float("-inf")  # the last round that wrote every answer's beat
        while True:
            self._wake.wait(max(0.0, beaten_at + CHECKPOINT_INTERVAL_S - time.monotonic()))  # the round's due
            self._wake.clear()
            with self._lock:
                answers = list(self._answers.values())
            # Woken by a new answer: only the answers with no record yet, until the round is due. Every answer's
            # beat at each wake-up was 1,475 writes for a burst of 50 answers over 1.3 s (docs/scaling-rounds.md).
            now = time.monotonic()
            if now - beaten_at >= CHECKPOINT_INTERVAL_S:
                beaten_at = now  # also when it fails or there is nothing to beat: the next round is due then
            else:
                answers = [progress for progress in answers if progress.message_id not in self._written]
            if not answers:
                continue
            try:
                self._write(answers)
            except redis.RedisError as error:
                # Redis is restarting: the next round rewrites everything.
                logger.warning("could not checkpoint %s answers: %s", len(answers), error)
                self._written.clear()
            except Exception:
                logger.exception("answer checkpoint failed")

    def _write(self, answers: list[AnswerProgress]) -> None:
        now = str(time.time())
        pipe = sync_client().pipeline(transaction=False)
        texts = []
        for progress in answers:
            message_id, text = progress.message_id, progress.text()
            written = self._written.get(message_id)
            pipe.hset(answer_progress_key(message_id), "beat", now)
            if written is None:  # new here, or after a Redis restart: the whole record
                pipe.expire(answer_progress_key(message_id), RECORD_TTL_S)
                pipe.set(answer_progress_text_key(message_id), text, ex=RECORD_TTL_S)
            elif len(text) > written:
                pipe.append(answer_progress_text_key(message_id), text[written:])
            texts.append((message_id, len(text)))
        pipe.execute()
        self._written.update(texts)


_instance: _Checkpointer | None = None
_instance_lock = threading.Lock()


def _checkpointer() -> _Checkpointer:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Checkpointer()
        return _instance


def answer_progress(message_id: int) -> AnswerProgress:
    """The running answer's progress in this process (an unrecorded one if it was not started)."""
    with _instance_lock:
        registered = _instance._answers.get(message_id) if _instance is not None else None
    return registered or AnswerProgress(message_id)


def answer_progress_start(*, message_id: int) -> AnswerProgress:
    progress = AnswerProgress(message_id)
    _checkpointer().add(progress)
    return progress


@task_received.connect
def _answer_reserved(sender=None, request=None, **kwargs) -> None:
    """Beat for an answer from the moment this worker reserves its task, not only once a thread runs it: if the
    worker dies with the task still waiting for a thread, the visitor hears of it as for a running answer."""
    if request is None or request.name != ANSWER_TASK_NAME or not request.args:
        return
    try:
        answer_progress_start(message_id=int(request.args[0]))
    except (TypeError, ValueError):
        return
