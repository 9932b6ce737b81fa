"""The watches of one Daphne process read their answers' progress records, and look for their saved ends,
together: each gets its own, however many ask at once, and a read asked for while a round trip is on its way goes
in the next one."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async

from chatbot.answers import watchdog
from chatbot.bots.services import bot_create
from chatbot.models import Message
from chatbot.realtime.connections import async_client
from chatbot.realtime.keys import answer_progress_key
from tests.chatbot import question_ask


async def progress_records(count: int) -> dict[int, bytes]:
    """Progress records for made-up message ids: {message id: its beat}."""
    base = uuid.uuid4().int % 10**9 + 10**9
    beats = {base + n: f"{1_000_000 + n}.5".encode() for n in range(count)}
    for message_id, beat in beats.items():
        await async_client().hset(answer_progress_key(message_id), mapping={"beat": beat})
    return beats


def pooled_connections() -> int:
    pool = async_client().connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_many_watches_reading_at_once_each_get_their_own_record_in_one_round_trip():
    beats = await progress_records(40)
    try:
        before = pooled_connections()
        records = await asyncio.gather(*(watchdog._progress_record_read(message_id) for message_id in beats))
        assert [record[b"beat"] for record in records] == list(beats.values())
        # One command each at once would have taken a connection each from the pool.
        assert pooled_connections() - before <= 1
        assert await watchdog._progress_record_read(1) == {}, "an answer without a record reads as none"
    finally:
        await async_client().delete(*(answer_progress_key(message_id) for message_id in beats))


async def test_a_read_asked_while_a_round_trip_is_on_its_way_goes_in_the_next():
    beats = await progress_records(2)
    first_id, second_id = beats
    try:
        first = asyncio.ensure_future(watchdog._progress_record_read(first_id))
        await asyncio.sleep(0)  # the first round trip is under way
        second = await watchdog._progress_record_read(second_id)
        assert (await first)[b"beat"] == beats[first_id]
        assert second[b"beat"] == beats[second_id]
    finally:
        await async_client().delete(*(answer_progress_key(message_id) for message_id in beats))


async def test_reads_asked_for_in_the_same_turn_go_in_one_fetch_and_each_gets_its_own_result():
    fetches: list[list[int]] = []

    async def squares(keys: list[int]) -> list[int]:
        fetches.append(keys)
        await asyncio.sleep(0.01)
        return [key * key for key in keys]

    reads = watchdog._SameTurnReads(squares)
    assert await asyncio.gather(*(reads.read(key) for key in range(25))) == [key * key for key in range(25)]
    assert fetches == [list(range(25))]


async def test_a_failed_fetch_fails_the_reads_it_held_and_the_next_turn_reads_again():
    calls = 0

    async def flaky(keys: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("Redis is restarting")
        return keys

    reads = watchdog._SameTurnReads(flaky)
    results = await asyncio.gather(reads.read("a"), reads.read("b"), return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    assert await reads.read("c") == "c"


@pytest.mark.django_db(transaction=True)
async def test_many_watches_looking_for_their_answers_end_each_get_their_own():
    bot = await sync_to_async(bot_create)(slug="acme", name="Acme")
    replies = [await sync_to_async(question_ask)(bot, f"Question {n}?", visitor_id=f"v{n}") for n in range(12)]
    ended = replies[::3]
    for reply in ended:
        await Message.objects.filter(id=reply.id).aupdate(status=Message.Status.COMPLETE, text=f"Answer {reply.id}.")

    events = await asyncio.gather(*(watchdog._ended_event(reply.id) for reply in [*replies, replies[0]]))

    assert [(event["message_id"], event["status"], event["text"]) for event in events if event] == [
        (reply.id, "complete", f"Answer {reply.id}.") for reply in [*ended, replies[0]]
    ]
    assert [event is None for event in events] == [reply not in ended for reply in [*replies, replies[0]]]
