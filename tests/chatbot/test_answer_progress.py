"""The worker's answer checkpoints (chatbot/answers/progress.py) on the real Redis: a new answer's record is
written at once, without rewriting the other answers' beats each time one starts; every beat is written again at
each round."""

import time
import uuid

import pytest

from chatbot.answers import progress
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import answer_progress_key

ROUND_S = 1.5  # longer than the default: the test reads the beats between two rounds


def _beat(message_id: int, *, other_than: float | None = None, within_s: float = 5.0) -> float:
    """The answer's beat once its record exists (and, given `other_than`, once it is another one)."""
    deadline = time.monotonic() + within_s
    while (beat := sync_client().hget(answer_progress_key(message_id), "beat")) is None or float(beat) == other_than:
        assert time.monotonic() < deadline, f"no (new) beat for answer {message_id}"
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
    # A round beats every answer: the next one is ROUND_S away.
    round_beat = _beat(first, other_than=_beat(first))
    round_seen_at = time.monotonic()

    later = [answers() for _ in range(5)]
    for message_id in later:
        _beat(message_id)  # each new answer's record at once

    assert time.monotonic() - round_seen_at < ROUND_S, "the next round came before the check: the host is too slow"
    assert float(sync_client().hget(answer_progress_key(first), "beat")) == round_beat
    # At the next round every answer beats again.
    _beat(first, other_than=round_beat, within_s=2 * ROUND_S + 2)
