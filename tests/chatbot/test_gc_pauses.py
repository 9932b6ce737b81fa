"""The server processes keep the garbage collector's full passes short: what lives as long as the process is
frozen out of the collector's view once it is loaded."""

import gc

import pytest

from chatbot.ops import gc_pauses


@pytest.fixture
def unfrozen_afterwards(monkeypatch):
    monkeypatch.setattr(gc_pauses, "_after_first_answer", False)
    yield
    gc.unfreeze()


def _walked_by_a_full_collection(obj) -> bool:
    return any(tracked is obj for tracked in gc.get_objects())


def test_after_the_freeze_a_full_collection_walks_only_what_was_made_since(unfrozen_afterwards):
    long_lived = [[n] for n in range(1_000)]  # a loaded process's modules, models and caches

    gc_pauses.long_lived_objects_freeze()
    made_since = [0]

    assert not _walked_by_a_full_collection(long_lived)
    assert not _walked_by_a_full_collection(long_lived[-1])
    assert _walked_by_a_full_collection(made_since)


def test_the_first_answer_freezes_what_it_loaded_and_later_answers_freeze_nothing(unfrozen_afterwards):
    loaded_with_the_first_answer = [[n] for n in range(1_000)]
    gc_pauses.first_answer_objects_freeze()

    made_by_a_later_answer = [[n] for n in range(1_000)]
    gc_pauses.first_answer_objects_freeze()

    assert not _walked_by_a_full_collection(loaded_with_the_first_answer)
    assert _walked_by_a_full_collection(made_by_a_later_answer)
