"""A consumer's frames and channel-layer events, dispatched by `SocketEventsDispatch` (chatbot/realtime/async_db.py):
each source in the order it sent, over the real Redis channel layer."""

import asyncio
import uuid

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chatbot.realtime.async_db import SocketEventsDispatch

# Channels' websocket_disconnect closes stale database connections, as every consumer's does.
pytestmark = pytest.mark.django_db(transaction=True)


class Recorder(SocketEventsDispatch, AsyncWebsocketConsumer):
    """Joins the group its path names; sends back each frame and each `bench.note` event."""

    async def connect(self):
        self.group = self.scope["path"].strip("/").rsplit("/", 1)[-1]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await asyncio.sleep(0.001)  # a handler that awaits: what arrives meanwhile waits its turn
        await self.send(text_data=f"frame {text_data}")

    async def bench_note(self, event):
        await self.send(text_data=f"event {event['n']}")


async def test_frames_and_events_are_each_dispatched_in_the_order_they_came():
    group = f"dispatch-{uuid.uuid4().hex[:8]}"
    communicator = WebsocketCommunicator(Recorder.as_asgi(), f"/ws/test/{group}/")
    assert (await communicator.connect(timeout=10))[0]
    layer = get_channel_layer()
    for n in range(30):
        await communicator.send_to(text_data=str(n))
        await layer.group_send(group, {"type": "bench.note", "n": n})
    sent = [await communicator.receive_from(timeout=5) for _ in range(60)]
    assert [text for text in sent if text.startswith("frame")] == [f"frame {n}" for n in range(30)]
    assert [text for text in sent if text.startswith("event")] == [f"event {n}" for n in range(30)]
    await communicator.disconnect()


async def test_a_disconnect_ends_the_consumer_and_its_receives():
    group = f"dispatch-{uuid.uuid4().hex[:8]}"
    communicator = WebsocketCommunicator(Recorder.as_asgi(), f"/ws/test/{group}/")
    assert (await communicator.connect(timeout=10))[0]
    await communicator.disconnect()
    await asyncio.wait_for(communicator.future, 5)  # the application returned
    assert communicator.future.exception() is None
    await asyncio.sleep(0)  # the receives' tasks finish being cancelled
    receiving = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__.endswith(".pump")]
    assert receiving == []  # no receive left waiting
