"""How a worker relays answers to the channel layer under load: an answer's text pieces that queue up behind a round
trip to Redis leave as one event, and the flush interval grows when many answers stream in a process that runs late."""

import gc
import threading
import time

import pytest

from chatbot.realtime.protocol import done_event, token_event, typing_event
from chatbot.realtime.relay import (
    ChannelLayerRelay,
    EventsSent,
    Lateness,
    SendBudget,
    TokenCoalescer,
    coalesce_interval,
    relay,
    token_events_merged,
)
from tests.chatbot import GroupListener


def token(message_id: int, text: str) -> dict:
    return token_event(message_id=message_id, text=text)


def test_consecutive_pieces_of_one_answer_become_one_event_in_their_place():
    events = [
        ("a", typing_event(message_id=1)),
        ("a", token(1, "Hel")),
        ("b", token(2, "Bon")),
        ("a", token(1, "lo")),
        ("b", token(2, "jour")),
        ("a", token(1, "!")),
    ]

    assert token_events_merged(events) == [
        ("a", typing_event(message_id=1)),
        ("a", token(1, "Hello!")),
        ("b", token(2, "Bonjour")),
    ]


def test_pieces_are_not_merged_across_another_event_of_their_group_or_another_answer():
    done = done_event(message_id=1, status="complete", citations=[], text="Hi")
    events = [("a", token(1, "H")), ("a", done), ("a", token(1, "i")), ("a", token(3, "x")), ("a", token(1, "y"))]

    assert token_events_merged(events) == events


def test_the_flush_interval_is_20_ms_for_a_few_answers_and_grows_with_many_up_to_the_cap_while_running_late(settings):
    settings.TOKEN_COALESCE_ADAPTIVE_AFTER = 25
    settings.TOKEN_COALESCE_MAX_MS = 40

    assert coalesce_interval(0.02, 1, running_late=True) == 0.02
    assert coalesce_interval(0.02, 25, running_late=True) == 0.02
    assert coalesce_interval(0.02, 30, running_late=True) == pytest.approx(0.024)
    assert coalesce_interval(0.02, 50, running_late=True) == pytest.approx(0.04)
    assert coalesce_interval(0.02, 500, running_late=True) == pytest.approx(0.04)
    assert coalesce_interval(0, 500, running_late=True) == 0  # tests and benches that turn coalescing off


def test_a_process_that_keeps_up_sends_every_20_ms_however_many_answers_stream(settings):
    settings.TOKEN_COALESCE_ADAPTIVE_AFTER = 25

    assert coalesce_interval(0.02, 50, running_late=False) == 0.02
    assert coalesce_interval(0.02, 500, running_late=False) == 0.02


def test_lateness_is_a_moving_average_of_how_late_timers_ran_and_recovers_once_they_run_on_time(settings):
    settings.TOKEN_COALESCE_LATE_MS = 3
    lateness = Lateness()

    for _ in range(40):
        lateness.observe(0.0002)
    assert not lateness.running_late()

    for _ in range(40):  # a burst of questions: timers 10 ms late
        lateness.observe(0.010)
    assert lateness.running_late()
    assert 3 < lateness.ms < 10

    for _ in range(60):
        lateness.observe(0.0)
    assert not lateness.running_late()


def test_an_answers_interval_grows_only_while_its_process_relay_runs_late(settings, monkeypatch):
    settings.TOKEN_COALESCE_ADAPTIVE_AFTER = 1
    settings.TOKEN_COALESCE_MAX_MS = 40
    settings.TOKEN_COALESCE_LATE_MS = 3
    first = TokenCoalescer(group="relay-late-interval", message_id=1)
    second = TokenCoalescer(group="relay-late-interval", message_id=2)
    try:
        monkeypatch.setattr(relay(), "lateness", Lateness())
        on_time = first._interval()
        relay().lateness.ms = 10.0
        late = first._interval()
    finally:
        first.release()
        second.release()

    assert on_time == 0.02
    assert late == pytest.approx(0.04)


def test_the_relays_thread_measures_how_late_it_runs_its_timers(settings):
    """A callback that holds the relay's thread for 50 ms makes the 20 timers due meanwhile run late, as a busy
    process does."""
    settings.TOKEN_COALESCE_LATE_MS = 3
    busy_relay = ChannelLayerRelay()  # its own thread: the process's relay keeps its measure
    ran = threading.Event()
    start = time.monotonic()
    busy_relay.call_at(start, lambda: time.sleep(0.05))
    for n in range(20):
        busy_relay.call_at(start + 0.001 * n, lambda: None)
    busy_relay.call_at(start + 0.001 * 20, ran.set)

    assert ran.wait(timeout=5)
    assert busy_relay.lateness.running_late()


INTERVAL_S = 0.02


def sent_at(arrivals: list[float]) -> list[float]:
    """When each piece's event goes, for pieces arriving at these times, one event each (none joined)."""
    budget, sends = SendBudget(), []
    for arrival in arrivals:
        send = arrival + budget.wait_s(arrival, INTERVAL_S)
        budget.spend(send, INTERVAL_S)
        sends.append(send)
    return sends


def test_pieces_that_keep_to_the_interval_go_as_they_come_even_after_one_went_out_late():
    # A model at 50 tokens/s; the third piece reached the relay 15 ms late (the process was busy), the rest on time.
    arrivals = [0.0, 0.02, 0.055, 0.06, 0.08, 0.1]

    assert sent_at(arrivals) == pytest.approx(arrivals)


def test_pieces_that_come_faster_than_the_interval_are_held_to_one_event_per_interval_after_one_of_slack():
    arrivals = [0.0, 0.001, 0.002, 0.003]

    assert sent_at(arrivals) == pytest.approx([0.0, 0.001, 0.02, 0.04])


def test_the_budget_refills_while_the_answer_pauses_but_never_beyond_one_event_of_slack():
    arrivals = [0.0, 1.0, 1.001, 1.002]  # a pause of a second, then a burst

    assert sent_at(arrivals) == pytest.approx([0.0, 1.0, 1.001, 1.02])


def test_an_answer_counts_as_streaming_until_it_is_closed_or_released():
    before = TokenCoalescer.streaming()
    first = TokenCoalescer(group="relay-count", message_id=1)
    second = TokenCoalescer(group="relay-count", message_id=2)
    assert TokenCoalescer.streaming() == before + 2

    first.close()
    second.release()
    second.release()

    assert TokenCoalescer.streaming() == before


def test_pieces_handed_over_together_reach_the_group_as_one_event_with_all_the_text_in_order():
    group = "relay-merge-test"
    pieces = [f"w{n} " for n in range(50)]

    with GroupListener(group) as listener:
        relay().group_send_many([(group, token(7, piece)) for piece in pieces])
        listener.wait_until(lambda events: "".join(e["text"] for e in events) == "".join(pieces))
        events = listener.settle()

    assert len(events) == 1
    assert events[0]["text"] == "".join(pieces)


def test_an_answers_piece_is_sent_by_its_own_thread_when_no_batch_is_on_its_way():
    """No hand-over to the relay's thread: the piece has reached Redis when `send_queued` returns."""
    group = "relay-own-thread-test"

    with GroupListener(group) as listener:
        sent = EventsSent()
        relay().queue(group, token(7, "Hello"), sent)
        relay().queue(group, token(7, ", world"), sent)
        relay().send_queued()
        try:
            sent.wait(0)
            sent_before_return = True
        except TimeoutError:
            sent_before_return = False
        listener.wait_until(lambda events: "".join(e["text"] for e in events) == "Hello, world")
        events = listener.settle()

    assert sent_before_return
    assert sent.failures == 0
    assert [event["text"] for event in events] == ["Hello, world"]


def test_a_coalescer_hands_an_answers_first_piece_over_at_once_and_holds_faster_ones_for_the_interval():
    """What the coalescer decides, whenever the relay's thread then gets to send: the first piece is not held back,
    one more may follow at once (the slack of `SendBudget`), and the rest of a burst waits for the timer."""
    group = "relay-first-piece-test"

    with GroupListener(group) as listener:
        coalescer = TokenCoalescer(group=group, message_id=9, interval_s=1.0)  # no stall of the test is that long
        coalescer.feed("word")
        handed_over_after_the_first = coalescer.events_sent
        coalescer.feed(" word")
        coalescer.feed(" word")
        coalescer.feed(" word")
        handed_over_after_four = coalescer.events_sent
        coalescer.close()
        listener.wait_until(lambda events: "".join(e["text"] for e in events) == "word word word word")

    assert handed_over_after_the_first == 1
    assert handed_over_after_four == 2
    assert coalescer.events_sent == 3


def test_a_coalescer_sends_what_it_was_fed_and_closes_with_everything_sent():
    group = "relay-coalescer-test"

    with GroupListener(group) as listener:
        coalescer = TokenCoalescer(group=group, message_id=8, interval_s=0.02)
        for piece in ["One", " two", " three", " four"]:
            coalescer.feed(piece)
        coalescer.close()
        listener.wait_until(lambda events: "".join(e["text"] for e in events) == "One two three four")
        events = listener.settle()

    assert coalescer.first_sent_at is not None
    # Events of one answer that wait in the outbox together leave as one.
    assert 1 <= len(events) <= coalescer.events_sent <= 4


def test_an_answer_keeps_nothing_for_each_event_it_has_sent():
    """What an answer keeps until it closes, the garbage collector walks at each full pass: a record per event sent
    (about 12 objects each) made those passes frequent and long at 100 answers streaming, and every stream of the
    process stood still meanwhile."""
    group = "relay-keeps-nothing-test"
    relay().group_send(group, typing_event(message_id=11))  # the relay's thread and connection are up
    coalescer = TokenCoalescer(group=group, message_id=11, interval_s=0)  # an event per piece
    gc.collect()
    tracked_before = len(gc.get_objects())

    for n in range(300):
        coalescer.feed(f" w{n}")
    relay().group_send(group, typing_event(message_id=11))  # sent after every piece before it
    gc.collect()
    tracked_after = len(gc.get_objects())
    coalescer.close()

    assert coalescer.events_sent == 300
    assert tracked_after - tracked_before < 50


def test_events_sent_counts_an_answers_sends_until_all_are_settled_and_keeps_the_first_failure():
    sent = EventsSent()
    for _ in range(3):
        sent.add()
    sent.set_result(None)
    sent.set_exception(ConnectionError("Redis went away"))

    with pytest.raises(TimeoutError):
        sent.wait(0.01)
    threading.Timer(0.05, sent.set_exception, [ConnectionError("still away")]).start()
    sent.wait(5)

    assert sent.failures == 2
    assert str(sent.first_failure) == "Redis went away"
