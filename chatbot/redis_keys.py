"""Small shared state kept in Redis, so it holds across Daphne processes and workers: rate limits, live
connection counts and stop requests for streaming answers."""

import asyncio
import functools
import time

import redis
import redis.asyncio as aioredis
from django.conf import settings

STOP_TTL_S = 600


@functools.cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_async_clients: dict[int, aioredis.Redis] = {}


def async_client() -> aioredis.Redis:
    # redis.asyncio connections belong to the event loop that opened them.
    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        # A blocking pool waits for a free connection under a burst instead of failing the visitor's message
        # (redis-py's default pool raises MaxConnectionsError past 100).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=500, timeout=5, socket_timeout=2, socket_connect_timeout=2
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop_id] = client
    return client


def _stop_key(message_id: int) -> str:
    return f"parley:stop:{message_id}"


async def answer_request_stop(*, message_id: int) -> None:
    await async_client().set(_stop_key(message_id), "1", ex=STOP_TTL_S)


def answer_stop_requested(*, message_id: int) -> bool:
    return bool(sync_client().exists(_stop_key(message_id)))


async def rate_limit_hit(*, scope: str, identity: str, limit: int, window_s: int) -> bool:
    """Count one event; True when `identity` is over `limit` events in the current window of `scope`."""
    window = int(time.time() // window_s)
    key = f"parley:rate:{scope}:{identity}:{window}"
    client = async_client()
    async with client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    return count > limit


async def connections_open(*, ip: str, limit: int) -> bool:
    """Count a new websocket from `ip`; False (and not counted) when it already has `limit` open."""
    key = f"parley:conn:{ip}"
    client = async_client()
    count = await client.incr(key)
    await client.expire(key, 3600)
    if count > limit:
        await client.decr(key)
        return False
    return True


async def connections_close(*, ip: str) -> None:
    await async_client().decr(f"parley:conn:{ip}")
