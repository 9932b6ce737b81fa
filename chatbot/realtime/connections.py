"""Redis clients, one per process (and one per event loop for asyncio), shared by everything that keeps small
state in Redis: limits, presence, stop requests, answer progress, the circuit breaker."""

import asyncio
import threading

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.driver_info import DriverInfo

# redis-py 8 looks its own version up in the installed packages' metadata for every connection it opens (0.5 ms of
# CPU, more under load) unless told: a burst of messages in Daphne opens a pooled connection per message at once.
_DRIVER_INFO = DriverInfo(lib_version=redis.__version__)


_sync_client: redis.Redis | None = None
_sync_client_lock = threading.Lock()


def sync_client() -> redis.Redis:
    # Made under a lock. With `functools.cache`, threads asking for the first time at once each made a client; a
    # client the cache did not keep is closed when collected, and closing it disconnects every connection of its
    # pool, also one a thread is still using (50 threads saving messages at once: a Redis read that timed out after
    # 2 s, then "I/O operation on closed file").
    global _sync_client
    client = _sync_client
    if client is None:
        with _sync_client_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, driver_info=_DRIVER_INFO
                )
            client = _sync_client
    return client


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
