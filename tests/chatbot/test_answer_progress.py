"""The worker's answer checkpoints (chatbot/answers/progress.py) on the real Redis: a new answer's record is
written at once, without rewriting the other answers' beats each time one starts; every beat is written again at
each round."""

import time
import uuid

import pytest

from chatbot.answers import progress
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import answer_progress_key

ROUND_S = 2.0  # longer than the default: the test reads the beats between two rounds


def _beat(message_id: int, *, within_s: float = 5.0) -> float:
    """The answer's beat once its record exists."""
    deadline = time.monotonic() + within_s
    while (beat := sync_client().hget(answer_progress_key(message_id), "beat")) is None:
        assert time.monotonic() < deadline, f"no record for answer {message_id}"
        time.sleep(0.005)
    return float(beat)


@pytest.fixture
def answers(monkeypatch):
    monkeypatch.setattr(progress, "CHECKPOINT_INTERVAL_S", ROUND_S)
    started = []

    def start() -> int:
        message_id = uuid.uuid4().int % 10**9 + 2 * 10**9
        started.append(progress.answer_progress_start(message_id=message_id))
        return message_id

    yield start
    for answer in started:
        answer.finish()


def test_answers_starting_one_after_another_do_not_rewrite_each_others_beats(answers):
    first = answers()
    first_beat = _beat(first)
    written_at = time.monotonic()

    later = [answers() for _ in range(5)]
    for message_id in later:
        _beat(message_id)  # each new answer's record at once

    assert time.monotonic() - written_at < ROUND_S, "the round came before the check: the host is too slow"
    assert float(sync_client().hget(answer_progress_key(first), "beat")) == first_beat
    # At the next round every answer beats again.
    deadline = time.monotonic() + 2 * ROUND_S + 2
    while float(sync_client().hget(answer_progress_key(first), "beat")) == first_beat:
        assert time.monotonic() < deadline, "the first answer's beat was not written again"
        time.sleep(0.05)
