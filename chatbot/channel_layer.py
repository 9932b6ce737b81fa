"""The channel layer: channels_redis's Redis pub/sub layer, plus `group_send_many`.

A worker relays the streamed text of dozens of answers at once. Sent one `group_send` at a time, each event costs a
round trip to Redis and, in a worker whose threads all want the GIL, a wait for the GIL after every round trip:
the relay fell seconds behind at 50 answers. `group_send_many` publishes a batch of events in one pipelined round
trip, in order. It uses channels_redis's group naming and connection per shard (4.3), which the tests pin down.
"""

import asyncio
from collections import defaultdict

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close


class _LoopLayer(RedisPubSubLoopLayer):
    async def group_send_many(self, events: list[tuple[str, dict]]) -> None:
        """Send each (group, message) in order: one pipelined round trip per Redis shard."""
        by_shard = defaultdict(list)
        for group, message in events:
            channel = self._get_group_channel_name(group)
            by_shard[self._get_shard(channel)].append((channel, self.channel_layer.serialize(message)))
        for shard, publications in by_shard.items():
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
