"""The watches of one Daphne process read their answers' progress records together: each gets its own record,
however many ask at once, and a read asked for while a round trip is on its way goes in the next one."""

import asyncio
import uuid

from chatbot.answers import watchdog
from chatbot.realtime.connections import async_client
from chatbot.realtime.keys import answer_progress_key


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
