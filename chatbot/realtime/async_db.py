"""Database work from async code (websocket consumers, the answer watchdog), run side by side.

Channels' `database_sync_to_async` is thread-sensitive by default: every consumer of a Daphne process runs its
queries in one shared thread, one after another. With 50 visitors asking at once a socket waited seconds for its
turn, and so did every streamed token behind it (see `SocketEventsDispatch`). None of these calls relies on
thread-bound state (no transaction spans two calls), so they run on a pool of threads, each with its own database
connection, closed when stale before and after each call as Channels does.
"""

from concurrent.futures import ThreadPoolExecutor

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from django.conf import settings

_executor = ThreadPoolExecutor(max_workers=settings.ASYNC_DB_THREADS, thread_name_prefix="async-db")


def db_async(function):
    """`function` (plain, synchronous ORM code) as a coroutine function run on the database threads."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_executor)


class SocketEventsDispatch:
    """Dispatch without Channels' per-event `aclose_old_connections()`.

    Channels closes stale database connections before every handler, in the one thread all consumers of the process
    share: once per streamed token event, queued behind the other sockets' queries. Every database call of these
    consumers goes through `db_async`, which closes stale connections around the call in its own thread, so the
    per-event hop is pure cost (it was most of the token delivery lag at 50 answers at once)."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
