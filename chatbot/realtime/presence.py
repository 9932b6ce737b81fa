"""Which staff are online, in Redis, so it holds across Daphne processes.

Each open dashboard socket is a member of sorted sets (one per bot it serves, or the administrators' set) scored by
the time it stops counting; pings push that time forward, and a socket that vanished without closing (a killed
process) drops out on its own once its score is in the past.
"""

import time

from chatbot.realtime.connections import async_client, sync_client
from chatbot.realtime.keys import PRESENCE_ADMINS_KEY, presence_bot_key
from chatbot.realtime.protocol import PRESENCE_TTL_S


def presence_keys(*, admin: bool, bot_ids: list[int]) -> list[str]:
    """The presence sets a dashboard socket counts in: the administrators' set, or one per bot it serves."""
    return [PRESENCE_ADMINS_KEY] if admin else [presence_bot_key(bot_id) for bot_id in bot_ids]


async def presence_refresh(*, channel_name: str, keys: list[str]) -> None:
    """Count this socket as online (again) for PRESENCE_TTL_S."""
    now = time.time()
    async with async_client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zadd(key, {channel_name: now + PRESENCE_TTL_S})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, PRESENCE_TTL_S * 2)
        await pipe.execute()


async def presence_leave(*, channel_name: str, keys: list[str]) -> None:
    async with async_client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrem(key, channel_name)
        await pipe.execute()


def staff_online(*, bot_id: int) -> int:
    """How many dashboard sockets that can take over this bot's conversations are open now."""
    now = time.time()
    with sync_client().pipeline(transaction=False) as pipe:
        for key in (PRESENCE_ADMINS_KEY, presence_bot_key(bot_id)):
            pipe.zcount(key, now, "+inf")
        return sum(pipe.execute())
