"""Redis clients, one per process (and one per event loop for asyncio), shared by everything that keeps small
state in Redis: limits, presence, stop requests, answer progress, the circuit breaker."""

import asyncio
import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.driver_info import DriverInfo

# redis-py 8 looks its own version up in the installed packages' metadata for every connection it opens (0.5 ms of
# CPU, more under load) unless told: a burst of messages in Daphne opens a pooled connection per message at once.
_DRIVER_INFO = DriverInfo(lib_version=redis.__version__)


@functools.cache
def sync_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, driver_info=_DRIVER_INFO
    )


_async_clients: dict[int, aioredis.Redis] = {}


def async_client() -> aioredis.Redis:
    # redis.asyncio connections belong to the event loop that opened them.
    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        # A blocking pool waits for a free connection under a burst instead of failing the visitor's message
        # (redis-py's default pool raises MaxConnectionsError past 100).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=500,
            timeout=5,
            socket_timeout=2,
            socket_connect_timeout=2,
            driver_info=_DRIVER_INFO,
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop_id] = client
    return client
