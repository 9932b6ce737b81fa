"""The channel layer: channels_redis's Redis pub/sub layer, plus `group_send_many`.

A worker relays the streamed text of dozens of answers at once. Sent one `group_send` at a time, each event costs a
round trip to Redis and, in a worker whose threads all want the GIL, a wait for the GIL after every round trip:
the relay fell seconds behind at 50 answers. `group_send_many` publishes a batch of events in one pipelined round
trip, in order. It uses channels_redis's group naming and connection per shard (4.3), which the tests pin down.

`GroupPublisher` does the same from a plain thread with redis-py's blocking client: the worker's relay
(chatbot/realtime/relay.py) publishes from a thread of its own, without an event loop, with the same group names,
shards and serializer.

It also adds `channel_release`, which `ChannelReleasedOnExit` calls when a socket's consumer ends. channels_redis
releases a socket's channel (its queue in the process and its Redis subscription) only when the consumer's pending
`receive` is cancelled, and Channels' dispatch loop never cancels it when the close and a queued event are picked up
together (channels_redis issue 276, open): a socket closed while events waited for it kept both for the life of
the process. That happens when Daphne falls behind its sockets: about 600 a minute in a soak slowed by tracemalloc.

Daphne receives every token event of its sockets from one pub/sub connection per shard. channels_redis takes each
message through redis-py's `get_message` (a timeout, a retry wrapper and a metrics hook per message), and hands it
to its consumer through a queue and a task of its own. `_Shard` reads the messages that came in the same read from
the parser's buffer (`messages_buffered`), and `new_channel_delivering` hands a socket's messages straight to its
consumer's inbox (docs/scaling-rounds.md, the round of 2026-12-04 late).
"""

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _consistent_hash, _wrap_close
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser

logger = logging.getLogger(__name__)


class _Shard(RedisSingleShardConnection):
    """channels_redis's connection to one Redis, receiving every message of a read at once: the first through
    redis-py's `get_message` (which waits for the socket, reconnects and subscribes again), the ones that came with
    it from the parser's buffer."""

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    self._receive_message(await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
                    for reply in messages_buffered(self._pubsub):
                        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                            self._receive_message({"channel": reply[1], "data": reply[2]})
                        else:  # (un)subscribe confirmations and the like: redis-py keeps its own books with them
                            await self._pubsub.handle_message(reply, ignore_subscribe_messages=True)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException:
                logger.exception("Unexpected exception in receive task")
                await asyncio.sleep(1)


def messages_buffered(pubsub) -> Iterator[object]:
    """The replies `pubsub`'s connection has already read and not parsed yet, parsed, in order; none when its parser
    is not hiredis's (redis-py's own parser reads them one `get_message` at a time)."""
    parser = getattr(pubsub.connection, "_parser", None)
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        return
    while (reply := parser._reader.gets()) is not NOT_ENOUGH_DATA:
        if isinstance(reply, Exception):
            raise reply
        yield reply


class _Delivery:
    """A channel's queue in channels_redis's books, for a channel whose messages go to `deliver` as they arrive."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.put_nowait = deliver


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]
        self._groups_of: dict[str, set[str]] = {}  # channel -> the groups it was added to

    async def new_channel_delivering(self, deliver: Callable[[bytes], None], prefix: str = "specific.") -> str:
        """`new_channel`, whose messages (serialized) are handed to `deliver` as they arrive instead of queued for
        `receive`: no queue and no task between the Redis connection and the consumer."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = _Delivery(deliver)
        await self._get_shard(channel).subscribe(channel)
        return channel

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._groups_of.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        groups = self._groups_of.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._groups_of[channel]

    async def flush(self) -> None:
        self._groups_of = {}
        await super().flush()

    async def channel_release(self, channel: str) -> None:
        """Forget a channel no consumer will read again: its queue, its Redis subscription, and its place in any
        group its consumer did not leave (a consumer cut short never runs its `disconnect`)."""
        for group in self._groups_of.pop(channel, set()):
            await super().group_discard(group, channel)
        if self.channels.pop(channel, None) is not None:
            await self._get_shard(channel).unsubscribe(channel)

    async def group_send_many(self, events: list[tuple[str, dict]]) -> None:
        """Send each (group, message) in order: one pipelined round trip per Redis shard."""
        for shard_index, publications in publications_by_shard(self, events).items():
            shard = self._shards[shard_index]
            async with shard._lock:
                shard._ensure_redis()
                pipeline = shard._redis.pipeline(transaction=False)
                for channel, data in publications:
                    pipeline.publish(channel, data)
                await pipeline.execute()


class PubSubChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer

    async def group_send_many(self, events: list[tuple[str, dict]]) -> None:
        await self._get_layer().group_send_many(events)

    async def new_channel_delivering(self, deliver: Callable[[dict | None, Exception | None], None]) -> str:
        """A new channel of this process whose messages are handed to `deliver(message, None)` as they arrive, on the
        event loop's thread, in order; `receive` is not for it. `deliver` must not block: every socket of the
        process waits meanwhile. A message that cannot be read is handed over as `deliver(None, error)`."""

        def deliver_read(data: bytes) -> None:
            try:
                message = self.deserialize(data)
            except Exception as error:
                deliver(None, error)
            else:
                deliver(message, None)

        return await self._get_layer().new_channel_delivering(deliver_read)

    async def channel_release(self, channel: str) -> None:
        await self._get_layer().channel_release(channel)

    def publisher(self, *, socket_timeout_s: float) -> "GroupPublisher":
        return GroupPublisher(self, socket_timeout_s=socket_timeout_s)


class GroupPublisher:
    """Publishes group events of `layer` from one thread at a time, blocking: one round trip per Redis shard per
    batch, as `group_send_many` does on an event loop.

    Each shard has one connection of its own (made from its client's pool, connected when first used and again
    after a failure), and a batch is its PUBLISH commands packed together and their replies read straight from the
    connection. redis-py's pipeline took the pool's checks and its metrics hooks, and each reply through the
    command's callbacks, for every batch and every publish: about half of the worker's relay thread
    (docs/scaling-rounds.md, the round of 2026-12-04 late)."""

    def __init__(self, layer: PubSubChannelLayer, *, socket_timeout_s: float) -> None:
        # channels_redis's own naming and sharding (an instance that never connects: no loop, no socket).
        self._naming = RedisPubSubLoopLayer(*layer._args, **layer._kwargs, channel_layer=layer)
        # The clients are kept for their pools, which the connections were made from (and a sentinel's resolves the
        # master at each connect).
        self._clients = [_blocking_client(shard.host, socket_timeout_s) for shard in self._naming._shards]
        self._connections = [client.connection_pool.make_connection() for client in self._clients]

    def group_send_many(self, events: list[tuple[str, dict]]) -> None:
        for shard_index, publications in publications_by_shard(self._naming, events).items():
            connection = self._connections[shard_index]
            try:
                connection.send_packed_command(
                    connection.pack_commands([("PUBLISH", channel, data) for channel, data in publications])
                )
                for _ in publications:
                    connection.read_response()
            except BaseException:
                connection.disconnect()  # replies may be left unread: the next batch starts on a new connection
                raise


def publications_by_shard(
    naming: RedisPubSubLoopLayer, events: list[tuple[str, dict]]
) -> dict[int, list[tuple[str, bytes]]]:
    """(channel, serialized message) of each (group, message), in order, by the index of the Redis shard that
    carries the group: channels_redis's own group channel names, sharding and serializer."""
    by_shard = defaultdict(list)
    for group, message in events:
        channel = naming._get_group_channel_name(group)
        by_shard[_consistent_hash(channel, len(naming._shards))].append(
            (channel, naming.channel_layer.serialize(message))
        )
    return by_shard


def _blocking_client(host: dict, socket_timeout_s: float) -> redis.Redis:
    """A blocking client for one of the layer's `hosts` entries (channels_redis's `create_pool`, without asyncio)."""
    host = {"socket_timeout": socket_timeout_s, **host}
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **host)
    master_name = host.pop("master_name", None)
    if master_name is not None:
        sentinels = redis.sentinel.Sentinel(host.pop("sentinels"), sentinel_kwargs=host.pop("sentinel_kwargs", None))
        return sentinels.master_for(master_name, **host)
    return redis.Redis(**host)


class ChannelReleasedOnExit:
    """A consumer mixin: when the consumer ends, however it ends, its channel is released (see the module's doc)."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            channel = getattr(self, "channel_name", None)
            release = getattr(getattr(self, "channel_layer", None), "channel_release", None)
            if channel and release is not None:
                try:
                    await release(channel)
                except Exception:  # Redis away: its subscriptions went with the connection
                    logger.warning("could not release channel %s", channel, exc_info=True)
