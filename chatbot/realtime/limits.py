"""Rate limits and open-connection counts, in Redis so they hold across Daphne processes."""

import time

from chatbot.realtime import keys
from chatbot.realtime.connections import async_client, sync_client

CONNECTIONS_TTL_S = 3600


async def rate_limit_hit(*, scope: str, identity: str, limit: int, window_s: int) -> bool:
    """Count one event; True when `identity` is over `limit` events in the current window of `scope`."""
    return await rate_limits_hit(limits=[(scope, identity, limit)], window_s=window_s)


# Counters in order, one round trip, atomic: each counts the event, and the first over its limit stops the count
# there (a visitor over their own limit does not use up their address's).
_RATE_LIMITS = """
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
  if count > tonumber(ARGV[i + 1]) then
    return 1
  end
end
return 0
"""


async def rate_limits_hit(*, limits: list[tuple[str, str, int]], window_s: int) -> bool:
    """Count one event against each (scope, identity, limit), in order, in one round trip: True when one is over its
    limit in the current window (those after it are not counted)."""
    window = int(time.time() // window_s)
    counters = [keys.rate_key(scope, identity, window) for scope, identity, _ in limits]
    over = await async_client().eval(
        _RATE_LIMITS, len(counters), *counters, window_s + 1, *[limit for _, _, limit in limits]
    )
    return bool(over)


# One round trip, atomic: a refusal neither counts nor refreshes the key's life. (Refreshing it on every refused
# attempt kept a leaked count alive for as long as widgets kept retrying: an address locked out for good.)
_OPEN = """
local count = redis.call('INCR', KEYS[1])
if count > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
# Never below zero: a count that expired while its sockets were open must not give the address extra room later.
_CLOSE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  redis.call('DECR', KEYS[1])
end
return count
"""


def once_per(*, scope: str, identity: str, interval_s: int) -> bool:
    """True the first time for `identity` within `interval_s` (then False until it passes): one alert per
    conversation per few minutes, however often it is asked for. Synchronous: called from database threads."""
    return bool(sync_client().set(keys.once_key(scope, identity), 1, nx=True, ex=interval_s))


async def connections_open(*, ip: str, limit: int) -> bool:
    """Count a new websocket from `ip`; False (and not counted) when it already has `limit` open."""
    return bool(await async_client().eval(_OPEN, 1, keys.connections_key(ip), limit, CONNECTIONS_TTL_S))


async def connections_close(*, ip: str) -> None:
    await async_client().eval(_CLOSE, 1, keys.connections_key(ip))
