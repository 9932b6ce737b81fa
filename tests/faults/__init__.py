"""Helpers for the fault tests: a visitor speaking the chat protocol to a real Daphne over a real websocket, the
way the widget does (token kept, messages re-sent with the same client id after a reconnect)."""

import asyncio
import json
import time

from websockets.asyncio.client import connect

ORIGIN = "https://www.acme.test"


class Visitor:
    def __init__(self, base_url: str, bot_public_id: str) -> None:
        self.url = base_url.replace("http://", "ws://") + f"/ws/chat/{bot_public_id}/"
        self.token: str | None = None
        self.socket = None
        self.frames: list[dict] = []
        self.conversation_id: str | None = None

    async def connect(self) -> dict:
        self.socket = await connect(self.url, origin=ORIGIN, open_timeout=10)
        await self.send({"type": "hello", "protocol": 1, "visitor_token": self.token})
        ready = await self.next("ready")
        self.token = ready["visitor_token"]
        self.conversation_id = ready["conversation_id"]
        return ready

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()

    async def send(self, frame: dict) -> None:
        await self.socket.send(json.dumps(frame))

    async def next(self, kind: str | None = None, *, timeout_s: float = 10.0, **match) -> dict:
        """The next frame (of type `kind`, matching `match`), skipping others; all are kept in `frames`."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} frame within {timeout_s} s; got {[f['type'] for f in self.frames]}")
            frame = json.loads(await asyncio.wait_for(self.socket.recv(), remaining))
            self.frames.append(frame)
            if (kind is None or frame["type"] == kind) and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def ask(self, text: str, *, client_id: str, timeout_s: float = 10.0) -> dict:
        """Send a message until it is acknowledged (reconnecting like the widget); returns the ack."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.socket is None or self.socket.state.name != "OPEN":
                    await self.connect()
                await self.send({"type": "message", "text": text, "client_id": client_id})
                while True:
                    frame = await self.next(timeout_s=max(0.5, deadline - time.monotonic()))
                    if frame["type"] == "ack" and frame["client_id"] == client_id:
                        return frame
                    if frame["type"] == "error" and frame.get("retryable"):
                        break
            except (OSError, TimeoutError, ConnectionError, Exception) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"message {client_id} never acknowledged: {error!r}") from error
                self.socket = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"message {client_id} never acknowledged")
            await asyncio.sleep(0.5)
