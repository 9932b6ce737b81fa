"""Database work from async code (websocket consumers, the answer watchdog), run side by side.

Channels' `database_sync_to_async` is thread-sensitive by default: every consumer of a Daphne process runs its
queries in one shared thread, one after another. With 50 visitors asking at once a socket waited seconds for its
turn, and so did every streamed token behind it (see `SocketEventsDispatch`). None of these calls relies on
thread-bound state (no transaction spans two calls), so they run on a pool of threads, each with its own database
connection, closed when stale before and after each call as Channels does.
"""

import asyncio
import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings

_executor = ThreadPoolExecutor(max_workers=settings.ASYNC_DB_THREADS, thread_name_prefix="async-db")


def db_async(function):
    """`function` (plain, synchronous ORM code) as a coroutine function run on the database threads."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_executor)


class SocketEventsDispatch:
    """A consumer's frames and events dispatched without two of Channels' per-event costs.

    - No `aclose_old_connections()` before each handler. Channels closes stale database connections before every
      handler, in the one thread all consumers of the process share: once per streamed token event, queued behind
      the other sockets' queries. Every database call of these consumers goes through `db_async`, which closes
      stale connections around the call in its own thread, so the per-event hop is pure cost (it was most of the
      token delivery lag at 50 answers at once).
    - No new task and `asyncio.wait` per event. Channels' `await_many_dispatch` makes a task for the next receive
      after each message and waits on both receives with `asyncio.wait` (a future and two done-callbacks each
      time). Here one task per source (the socket, the channel layer) keeps receiving into one inbox, and the
      consumer dispatches from it, one message at a time in the order they arrived, as Channels does. A receive
      that fails ends the consumer with its error, as in Channels.

    - No queue and task between the channel layer and the inbox: the layer hands each event to the inbox as it
      arrives (`new_channel_delivering`, chatbot/realtime/channel_layer.py).

    `__call__` sets up what Channels' `AsyncConsumer.__call__` does (scope, channel layer, channel name, send)."""

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        inbox: asyncio.Queue = asyncio.Queue()
        sources = [receive]
        layer = self.channel_layer
        if layer is not None and hasattr(layer, "new_channel_delivering"):
            self.channel_name = await layer.new_channel_delivering(lambda *item: inbox.put_nowait(item))
        elif layer is not None:  # another layer (Channels' in-memory one): its events are received as the frames are
            self.channel_name = await layer.new_channel()
            sources.append(functools.partial(layer.receive, self.channel_name))
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await _dispatch_in_arrival_order(inbox, sources, self.dispatch)

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


async def _dispatch_in_arrival_order(inbox: asyncio.Queue, sources, dispatch) -> None:
    """Dispatch (message, error) from `inbox` one at a time, `sources` pumped into it by a task each, until a
    message's handler or an error ends it."""

    async def pump(receive) -> None:
        try:
            while True:
                inbox.put_nowait((await receive(), None))
        except Exception as error:  # the dispatching task raises it
            inbox.put_nowait((None, error))

    pumps = [asyncio.ensure_future(pump(receive)) for receive in sources]
    try:
        while True:
            message, error = await inbox.get()
            if error is not None:
                raise error
            await dispatch(message)
    finally:
        for task in pumps:
            task.cancel()
        for task in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
