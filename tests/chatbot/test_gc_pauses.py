"""The server processes keep the garbage collector's full passes short: what lives as long as the process is
frozen out of the collector's view once it is loaded."""

import gc
import time

import pytest

from chatbot.ops import gc_pauses


@pytest.fixture
def unfrozen_afterwards(monkeypatch):
    monkeypatch.setattr(gc_pauses, "_after_first_answer", False)
    yield
    gc.unfreeze()


def _full_collection_ms() -> float:
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def test_after_the_freeze_a_full_collection_walks_only_what_was_made_since(unfrozen_afterwards):
    long_lived = [[n] for n in range(300_000)]  # a loaded process's modules, models and caches
    before = _full_collection_ms()

    gc_pauses.long_lived_objects_freeze()

    assert gc.get_freeze_count() >= len(long_lived)
    assert _full_collection_ms() < before / 5


def test_the_first_answer_freezes_what_it_loaded_and_later_answers_freeze_nothing(unfrozen_afterwards):
    loaded_with_the_first_answer = [[n] for n in range(1_000)]
    gc_pauses.first_answer_objects_freeze()
    frozen = gc.get_freeze_count()
    assert frozen >= len(loaded_with_the_first_answer)

    made_by_a_later_answer = [[n] for n in range(1_000)]
    gc_pauses.first_answer_objects_freeze()

    assert gc.get_freeze_count() == frozen
    assert made_by_a_later_answer
