"""Helpers for the answer tests: a listener on a conversation's channel-layer group (what every open widget of
the conversation receives), and knowledge pages with titles and links."""

import asyncio
import threading
import time

from channels.layers import get_channel_layer

from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.models import Bot, Message
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import answer_stop_key
from knowledge.services import document_index, source_add_url

_CLOSE = "listener.close"


class GroupListener:
    """Joins channel-layer groups from an event loop of its own, one channel per group as one Daphne process
    serving one widget per conversation would, and keeps every event with the `time.monotonic()` it arrived at.
    Use as a context manager around the answer."""

    def __init__(self, *groups: str) -> None:
        self.groups = groups
        self.received: list[tuple[float, dict]] = []
        self._changed = threading.Condition()
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._listen(),), daemon=True)
        self._layer = None
        self._channels: list[str] = []

    def __enter__(self) -> "GroupListener":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"could not join {self.groups}")
        return self

    def __exit__(self, *exc_info) -> None:
        # A sentinel message instead of cancelling receive(): nothing already on its way can be lost.
        for channel in self._channels:
            asyncio.run_coroutine_threadsafe(self._layer.send(channel, {"type": _CLOSE}), self._loop).result(5)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> None:
        self._layer = get_channel_layer()
        for group in self.groups:
            channel = await self._layer.new_channel()
            await self._layer.group_add(group, channel)
            self._channels.append(channel)
        self._ready.set()
        await asyncio.gather(
            *(self._receive(group, channel) for group, channel in zip(self.groups, self._channels, strict=True))
        )

    async def _receive(self, group: str, channel: str) -> None:
        try:
            while True:
                event = await self._layer.receive(channel)
                if event["type"] == _CLOSE:
                    return
                with self._changed:
                    self.received.append((time.monotonic(), event))
                    self._changed.notify_all()
        finally:
            await self._layer.group_discard(group, channel)

    @property
    def events(self) -> list[dict]:
        with self._changed:
            return [event for _, event in self.received]

    def events_of(self, message_id: int) -> list[dict]:
        return [event for event in self.events if event.get("message_id") == message_id]

    def wait_until(self, predicate, *, timeout_s: float = 10.0) -> None:
        """Wait until `predicate(events)` is true."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate([event for _, event in self.received]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"still waiting after {timeout_s} s; received {len(self.received)} events")
                self._changed.wait(remaining)

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def text(self) -> str:
        return "".join(event["text"] for event in self.events if event["type"] == "chat.token")

    def wait_for(self, event_type: str, *, timeout_s: float = 10.0) -> tuple[float, dict]:
        """The first event of this type (and when it arrived), waiting for it if needed."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for arrived_at, event in self.received:
                    if event["type"] == event_type:
                        return arrived_at, event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {event_type} within {timeout_s} s; received {self.types()}")
                self._changed.wait(remaining)

    def settle(self, quiet_s: float = 0.1) -> list[dict]:
        """Every event, once none has arrived for `quiet_s` (to see that nothing comes after the last one)."""
        while True:
            with self._changed:
                count = len(self.received)
                self._changed.wait(quiet_s)
                if len(self.received) == count:
                    return [event for _, event in self.received]


def page_add(bot: Bot, *, title: str, url: str, text: str) -> None:
    """Index one web page into the bot's knowledge base, the way a crawled page is indexed."""
    source = source_add_url(knowledge_base=bot.knowledge_base, url=url)
    document_index(
        source=source,
        key=url,
        url=url,
        filename="page.md",
        content_type="text/markdown",
        data=f"# {title}\n\n{text}\n".encode(),
    )


def stop_requests_forget() -> None:
    """Delete every stop request in Redis. They are keyed by message id, ids restart with every test database,
    and Redis keeps a request for ten minutes: one left by an earlier run (of any test that stops an answer)
    would stop a new answer that happens to get the same id."""
    client = sync_client()
    for key in client.scan_iter(match=answer_stop_key("*"), count=1000):
        client.delete(key)


def question_ask(bot: Bot, text: str, *, visitor_id: str = "visitor-1") -> Message:
    """The visitor asks; returns the bot message that will hold the answer (its task is not queued)."""
    conversation = conversation_resume_or_start(bot=bot, visitor_id=visitor_id)
    _, bot_message = message_receive(conversation=conversation, text=text, dispatch_answer=False)
    return bot_message
