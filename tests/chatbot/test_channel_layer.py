"""The channel layer Parley runs on: Redis pub/sub, with batched sends and names scoped to the Redis database."""

import asyncio

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings

from chatbot.realtime.channel_layer import PubSubChannelLayer
from chatbot.realtime.connections import sync_client as _redis


async def _member_of(layer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _received(layer, channel: str, count: int) -> list[dict]:
    return [await asyncio.wait_for(layer.receive(channel), timeout=5) for _ in range(count)]


async def test_group_send_many_delivers_every_event_to_its_group_in_order():
    layer = get_channel_layer()
    first = await _member_of(layer, "conversation.1001")
    second = await _member_of(layer, "conversation.1002")
    watcher = await _member_of(layer, "conversation.1001")  # a staff dashboard watching the first

    events = [("conversation.1001", {"type": "chat.token", "text": f"a{n}"}) for n in range(50)]
    events += [("conversation.1002", {"type": "chat.token", "text": "b0"})]
    events += [("conversation.1001", {"type": "chat.done", "text": "end"})]
    await layer.group_send_many(events)

    expected_first = [f"a{n}" for n in range(50)] + ["end"]
    assert [event["text"] for event in await _received(layer, first, 51)] == expected_first
    assert [event["text"] for event in await _received(layer, watcher, 51)] == expected_first
    assert [event["text"] for event in await _received(layer, second, 1)] == ["b0"]
    for group, channel in (("conversation.1001", first), ("conversation.1001", watcher), ("conversation.1002", second)):
        await layer.group_discard(group, channel)


async def test_installations_on_other_redis_databases_do_not_hear_each_other():
    """PUBLISH ignores the database number: the prefix carries it instead."""
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == f"parley:{settings.REDIS_URL.rsplit('/', 1)[1]}:"
    ours = get_channel_layer()
    other_installation = PubSubChannelLayer(hosts=[{"address": settings.REDIS_URL}], prefix="parley:elsewhere:")
    ours_channel = await _member_of(ours, "conversation.7")
    theirs_channel = await _member_of(other_installation, "conversation.7")

    await other_installation.group_send("conversation.7", {"type": "chat.token", "text": "theirs"})
    await ours.group_send("conversation.7", {"type": "chat.token", "text": "ours"})

    assert [event["text"] for event in await _received(ours, ours_channel, 1)] == ["ours"]
    assert [event["text"] for event in await _received(other_installation, theirs_channel, 1)] == ["theirs"]
    await ours.group_discard("conversation.7", ours_channel)
    await other_installation.flush()


async def test_a_released_channel_leaves_its_groups_and_redis_forgets_both():
    layer = get_channel_layer()
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    listening = await _member_of(layer, "conversation.31")
    left_behind = await _member_of(layer, "conversation.32")  # its consumer never got to group_discard
    await layer.group_add("conversation.31", left_behind)

    await layer.channel_release(left_behind)

    subscribed = {name.decode() for name in await asyncio.to_thread(_redis().pubsub_channels, f"{prefix}*")}
    assert left_behind not in subscribed
    assert not any(name.endswith("conversation.32") for name in subscribed), "nobody else listens to that group"
    await layer.group_send("conversation.31", {"type": "chat.token", "text": "still heard"})
    assert [event["text"] for event in await _received(layer, listening, 1)] == ["still heard"]
    await layer.group_discard("conversation.31", listening)


async def test_a_burst_of_events_is_read_from_the_connections_buffer_not_one_get_message_each(monkeypatch):
    """Daphne's receive loop (`_Shard`): the events that came in one read are taken from the parser's buffer, in
    order, not through a `get_message` each (a timeout, a retry wrapper and a metrics hook per event)."""
    from redis.asyncio.client import PubSub

    messages_through_get_message = 0
    get_message = PubSub.get_message

    async def counted(self, *args, **kwargs):
        nonlocal messages_through_get_message
        message = await get_message(self, *args, **kwargs)
        messages_through_get_message += message is not None
        return message

    monkeypatch.setattr(PubSub, "get_message", counted)
    layer = get_channel_layer()
    channel = await _member_of(layer, "conversation.41")

    await layer.group_send_many([("conversation.41", {"type": "chat.token", "text": f"t{n}"}) for n in range(200)])

    assert [event["text"] for event in await _received(layer, channel, 200)] == [f"t{n}" for n in range(200)]
    assert messages_through_get_message < 50
    await layer.group_discard("conversation.41", channel)


async def test_a_channel_delivering_hands_each_event_over_as_it_arrives_and_an_unreadable_one_as_its_error():
    layer = get_channel_layer()
    arrived = {"broken": asyncio.Queue(), "fine": asyncio.Queue()}
    broken = await layer.new_channel_delivering(lambda *item: arrived["broken"].put_nowait(item))
    fine = await layer.new_channel_delivering(lambda *item: arrived["fine"].put_nowait(item))
    for channel in (broken, fine):
        await layer.group_add("conversation.42", channel)

    await asyncio.to_thread(_redis().publish, broken, b"\xc1 not a message")
    await layer.group_send("conversation.42", {"type": "chat.token", "text": "after it"})

    message, error = await asyncio.wait_for(arrived["broken"].get(), timeout=5)
    assert message is None and error is not None
    assert await asyncio.wait_for(arrived["broken"].get(), timeout=5) == (
        {"type": "chat.token", "text": "after it"},
        None,
    )
    assert await asyncio.wait_for(arrived["fine"].get(), timeout=5) == (
        {"type": "chat.token", "text": "after it"},
        None,
    )
    for channel in (broken, fine):
        await layer.channel_release(channel)


async def test_a_publisher_whose_connection_was_cut_fails_that_batch_and_sends_the_next_on_a_new_connection():
    """The worker's relay publishes through `GroupPublisher`, one connection per shard: a batch that fails leaves no
    reply behind for the next one to read as its own."""
    layer = get_channel_layer()
    publisher = layer.publisher(socket_timeout_s=5)
    channel = await _member_of(layer, "conversation.43")
    await asyncio.to_thread(publisher.group_send_many, [("conversation.43", {"type": "chat.token", "text": "before"})])
    connection = publisher._connections[0]
    connection.send_command("CLIENT", "ID")
    await asyncio.to_thread(_redis().client_kill_filter, _id=connection.read_response())

    with pytest.raises(redis.ConnectionError):
        await asyncio.to_thread(publisher.group_send_many, [("conversation.43", {"type": "chat.token", "text": "cut"})])
    await asyncio.to_thread(publisher.group_send_many, [("conversation.43", {"type": "chat.token", "text": "after"})])

    assert [event["text"] for event in await _received(layer, channel, 2)] == ["before", "after"]
    await layer.group_discard("conversation.43", channel)
