"""Which staff are online, in Redis, so it holds across Daphne processes.

Each open dashboard socket is a member of sorted sets (one per bot it serves, or the administrators' set) scored by
the time it stops counting; pings push that time forward, and a socket that vanished without closing (a killed
process) drops out on its own once its score is in the past.
"""

import time

from chatbot import redis_keys
from chatbot.dashboard.protocol import PRESENCE_TTL_S

ADMINS_KEY = "parley:presence:admins"


def bot_key(bot_id: int) -> str:
    return f"parley:presence:bot:{bot_id}"


async def presence_refresh(*, channel_name: str, keys: list[str]) -> None:
    """Count this socket as online (again) for PRESENCE_TTL_S."""
    now = time.time()
    async with redis_keys.async_client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zadd(key, {channel_name: now + PRESENCE_TTL_S})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, PRESENCE_TTL_S * 2)
        await pipe.execute()


async def presence_leave(*, channel_name: str, keys: list[str]) -> None:
    async with redis_keys.async_client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrem(key, channel_name)
        await pipe.execute()


def staff_online(*, bot_id: int) -> int:
    """How many dashboard sockets that can take over this bot's conversations are open now."""
    now = time.time()
    client = redis_keys.sync_client()
    return sum(client.zcount(key, now, "+inf") for key in (ADMINS_KEY, bot_key(bot_id)))
