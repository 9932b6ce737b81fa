"""Rate limits and open-connection counts, in Redis so they hold across Daphne processes."""

import time

from chatbot.realtime import keys
from chatbot.realtime.connections import async_client

CONNECTIONS_TTL_S = 3600


async def rate_limit_hit(*, scope: str, identity: str, limit: int, window_s: int) -> bool:
    """Count one event; True when `identity` is over `limit` events in the current window of `scope`."""
    key = keys.rate_key(scope, identity, int(time.time() // window_s))
    async with async_client().pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s + 1)
        count, _ = await pipe.execute()
    return count > limit


async def connections_open(*, ip: str, limit: int) -> bool:
    """Count a new websocket from `ip`; False (and not counted) when it already has `limit` open."""
    key = keys.connections_key(ip)
    client = async_client()
    count = await client.incr(key)
    await client.expire(key, CONNECTIONS_TTL_S)
    if count > limit:
        await client.decr(key)
        return False
    return True


async def connections_close(*, ip: str) -> None:
    await async_client().decr(keys.connections_key(ip))
