"""A fake Parley for the widget's browser tests: serves static/, the rendered chat page, a host page
that embeds widget.js, and a websocket that speaks protocol v1 (docs/protocol.md) with canned answers.

Run it alone to look at the widget:  .venv/bin/python tests/widget_harness/fake_server.py --port 8765
then open http://localhost:8765/host.html (the host page; Parley itself is at 127.0.0.1).

What the fake bot answers depends on the visitor's text: "xss" (hostile Markdown), "slow" (a long
stream, to stop), "fail" (a retryable error frame), "drop" (the socket dies mid-answer), anything else
a short Markdown answer with two citations. "New conversation" starts the visitor's conversation over, unless
their last message says "stay" (then it is refused as rate limited).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import mimetypes
import secrets
import struct
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "static"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_CHARS = 4000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'none'"
)

BOT = {
    "name": "Acme Helper",
    "public_id": "demo",
    "greeting": "Hi! I answer questions about **Acme**. How can I help?",
    "color": "#4f46e5",
    "avatar_url": "",
}

CITATIONS = [
    {"n": 1, "title": "Shipping policy", "url": "https://docs.example.com/shipping"},
    {"n": 2, "title": "Returns", "url": "https://docs.example.com/returns"},
]

ANSWER = (
    "Here is what I found about **{topic}**:\n\n"
    "1. Orders ship within *two* business days [1].\n"
    "2. Returns are free for `30 days` [2].\n\n"
    "```python\nprint('<b>not bold</b>')\n```\n\n"
    "More at <https://docs.example.com>."
)

XSS_ANSWER = (
    "<img src=x onerror=\"window.top.__pwned='img'\"> and <script>window.top.__pwned='script'</script>\n\n"
    "[click me](javascript:window.top.__pwned='link') and [data](data:text/html,<script>1</script>) "
    "and [spaced](  JaVaScRiPt:alert(1)) and [tab](java\tscript:alert(1)) and <javascript:alert(1)>\n\n"
    "**<svg onload=\"window.top.__pwned='svg'\">** *<iframe src=javascript:alert(1)>*\n\n"
    "```html\n<img src=x onerror=\"window.top.__pwned='code'\">\n```\n\n"
    "`<b onmouseover=alert(1)>inline</b>` [3](javascript:alert(1))"
)
XSS_CITATIONS = [{"n": 3, "title": "evil", "url": "javascript:window.top.__pwned='cite'"}]


def render_chat_page(public_id: str, query: dict[str, list[str]]) -> str:
    """The chat page template rendered the way the lead's view will (the context is the contract)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.staticfiles"],
            STATIC_URL="/static/",
            TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [REPO / "templates"]}],
        )
        django.setup()
    from django.template.loader import render_to_string

    lang = query.get("lang", ["en"])[0]
    lang = lang if lang in {"en", "fr", "de"} else "en"
    embed = query.get("embed", [""])[0] == "1"
    bot = {**BOT, "public_id": public_id}
    if "color" in query:
        bot["color"] = query["color"][0]
    config = {
        "bot": {
            "name": bot["name"],
            "publicId": bot["public_id"],
            "greeting": bot["greeting"],
            "color": bot["color"],
        },
        "wsPath": f"/ws/chat/{public_id}/",
        "lang": lang,
        "embed": embed,
        "parentOrigin": None,
    }
    return render_to_string("chatbot/chat_page.html", {"bot": bot, "lang": lang, "embed": embed, "config": config})


def host_page(parley: str, query: dict[str, list[str]]) -> str:
    """A customer's page embedding the widget; ?hostile=1 adds CSS that tries to break it."""
    attrs = "".join(f' data-{name}="{query[name][0]}"' for name in ("lang", "position", "open") if name in query)
    hostile = (
        "parley-widget{display:none!important;opacity:0!important;position:static!important}"
        "button{width:10px!important;height:10px!important;display:none!important;background:red!important}"
        "iframe{display:none!important}div{position:static!important;visibility:hidden!important}"
        if "hostile" in query
        else ""
    )
    rogue = f'<iframe src="{parley}/rogue.html" title="ad" width="10" height="10"></iframe>' if "rogue" in query else ""
    return (
        f'<!DOCTYPE html><html lang="{query.get("html_lang", ["de"])[0]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Customer site</title>'
        f"<style>{hostile}</style></head><body><h1>Customer site</h1><p>Some content.</p>"
        '<button type="button" id="host-button">Host button</button>'
        f'{rogue}<script src="{parley}/widget.js" data-bot="demo"{attrs} async></script></body></html>'
    )


# A page on Parley's own origin that is NOT the widget's iframe: its messages must be ignored.
ROGUE_PAGE = (
    "<!DOCTYPE html><html><body><script>"
    "addEventListener('message', e => { if (e.data === 'fire') parent.postMessage({type: 'parley:close'}, '*'); });"
    "parent.postMessage({type: 'parley:ready', color: '#ff0000', name: 'Rogue', unread: 42}, '*');"
    "</script></body></html>"
)


@dataclass
class Visitor:
    token: str
    messages: list[dict] = field(default_factory=list)
    conversation: int = 1


class Socket:
    """One websocket connection (server side of RFC 6455, text frames only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.closed = False

    async def recv(self) -> str | None:
        while True:
            head = await self.reader.readexactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await self.reader.readexactly(length)))
            if opcode == 0x8:
                await self.close()
                return None
            if opcode == 0x9:
                self._write(0xA, data)
            elif opcode == 0x1:
                return data.decode()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.closed:
            return
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        self.writer.write(header + payload)

    async def send(self, frame: dict) -> None:
        self._write(0x1, json.dumps(frame).encode())
        await self.writer.drain()

    async def close(self, code: int = 1000) -> None:
        self._write(0x8, struct.pack("!H", code))
        self.closed = True
        self.writer.close()

    def kill(self) -> None:
        """Drops the TCP connection without a close frame, like a dying proxy."""
        self.closed = True
        self.writer.transport.abort()


class FakeParley:
    def __init__(self) -> None:
        self.received: list[dict] = []  # every client frame, in order
        self.visitors: dict[str, Visitor] = {}
        self.sockets: set[Socket] = set()
        self.next_id = 100
        self.token_delay = 0.04
        self.first_token_delay = 0.4
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    # --- running --------------------------------------------------------------------------------

    def start_in_thread(self, port: int = 0) -> FakeParley:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", port))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return self

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_origin(self) -> str:
        """The customer's site: the same server under another origin."""
        return f"http://localhost:{self.port}"

    def call(self, fn, *args):
        """Runs fn(*args) (a coroutine function) on the server loop from a test thread."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(5)

    def frames(self, type_: str) -> list[dict]:
        return [f for f in list(self.received) if f.get("type") == type_]

    async def kill_all(self) -> None:
        for sock in list(self.sockets):
            sock.kill()

    async def push(self, frame: dict) -> None:
        for sock in list(self.sockets):
            await sock.send(frame)

    # --- HTTP -----------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *header_lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines if ":" in h)}
        url = urlsplit(target)
        query = parse_qs(url.query)
        if headers.get("upgrade", "").lower() == "websocket" and url.path.startswith("/ws/chat/"):
            await self.websocket(reader, writer, headers)
            return
        status, content_type, body, extra = self.route(url.path, query, headers)
        lines = [
            f"HTTP/1.1 {status}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *extra,
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body if method != "HEAD" else b""))
        await writer.drain()
        writer.close()

    def route(self, path: str, query: dict, headers: dict) -> tuple[str, str, bytes, list[str]]:
        if path == "/widget.js":
            return self.static_file(STATIC / "parley" / "widget.js")
        if path.startswith("/static/"):
            file = (STATIC / path.removeprefix("/static/")).resolve()
            if STATIC in file.parents and file.is_file():
                return self.static_file(file)
        if path.startswith("/chat/") and path.count("/") == 3:
            public_id = path.split("/")[2]
            html = render_chat_page(public_id, query).encode()
            extra = [] if "nocsp" in query else [f"Content-Security-Policy: {CSP}"]
            return "200 OK", "text/html; charset=utf-8", html, extra
        if path == "/host.html":
            return "200 OK", "text/html; charset=utf-8", host_page(self.origin, query).encode(), []
        if path == "/rogue.html":
            return "200 OK", "text/html; charset=utf-8", ROGUE_PAGE.encode(), []
        return "404 Not Found", "text/plain", b"not found", []

    @staticmethod
    def static_file(file: Path) -> tuple[str, str, bytes, list[str]]:
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".js":
            content_type = "text/javascript"
        return "200 OK", f"{content_type}; charset=utf-8", file.read_bytes(), []

    # --- websocket ------------------------------------------------------------------------------

    async def websocket(self, reader, writer, headers) -> None:
        # RFC 6455 fixes SHA-1 for the handshake; it is not a security use.
        key = (headers["sec-websocket-key"] + WS_GUID).encode()
        accept = base64.b64encode(hashlib.sha1(key, usedforsecurity=False).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        sock = Socket(reader, writer)
        self.sockets.add(sock)
        session = {"visitor": None, "stream": None}
        try:
            while (text := await sock.recv()) is not None:
                try:
                    frame = json.loads(text)
                except ValueError:
                    await sock.send({"type": "error", "code": "bad_frame", "message": "Bad frame.", "retryable": False})
                    continue
                self.received.append(frame)
                await self.on_frame(sock, session, frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            sock.closed = True
            self.sockets.discard(sock)
            if session["stream"]:
                session["stream"].cancel()

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def on_frame(self, sock: Socket, session: dict, frame: dict) -> None:
        kind = frame.get("type")
        visitor: Visitor | None = session["visitor"]
        if kind == "hello":
            token = frame.get("visitor_token")
            if token not in self.visitors:
                token = secrets.token_urlsafe(16)
                self.visitors[token] = Visitor(token)
            session["visitor"] = visitor = self.visitors[token]
            await sock.send(self.ready(visitor))
        elif visitor is None:
            await sock.send({"type": "error", "code": "bad_frame", "message": "Say hello first.", "retryable": False})
        elif kind == "ping":
            await sock.send({"type": "pong"})
        elif kind == "message":
            text = str(frame.get("text", ""))
            if len(text) > MAX_CHARS:
                await sock.send({"type": "error", "code": "too_long", "message": "Too long.", "retryable": False})
            elif session["stream"] and not session["stream"].done():
                await sock.send({"type": "error", "code": "busy", "message": "Still answering.", "retryable": True})
            else:
                saved = self.message("visitor", text)
                visitor.messages.append(saved)
                await sock.send({"type": "ack", "client_id": frame.get("client_id"), "message_id": saved["id"]})
                session["stream"] = asyncio.create_task(self.answer(sock, visitor, text))
        elif kind == "new_conversation":
            said = [m["text"] for m in visitor.messages if m["role"] == "visitor"]
            if said and "stay" in said[-1]:
                await sock.send({"type": "error", "code": "rate_limited", "message": "Not so fast.", "retryable": True})
                return
            if session["stream"] and not session["stream"].done():
                session["stream"].cancel()
            visitor.messages, visitor.conversation = [], visitor.conversation + 1
            await sock.send(self.ready(visitor))
        elif kind == "stop":
            if session["stream"] and not session["stream"].done():
                session["stream"].cancel()
        elif kind == "feedback":
            for message in visitor.messages:
                if message["id"] == frame.get("message_id"):
                    message["feedback"] = frame.get("value")
        elif kind == "handoff_request":
            await sock.send({"type": "handoff", "status": "requested", "message": "A person will join shortly."})
            await sock.send({"type": "staff_joined", "name": "Sam"})
            visitor.messages.append(self.message("staff", "Hello, Sam here. *How can I help?*", staff_name="Sam"))
            await sock.send(
                {
                    "type": "staff_message",
                    "message_id": visitor.messages[-1]["id"],
                    "name": "Sam",
                    "text": visitor.messages[-1]["text"],
                }
            )
        else:
            await sock.send({"type": "error", "code": "unknown_type", "message": "Unknown frame.", "retryable": False})

    def ready(self, visitor: Visitor) -> dict:
        return {
            "type": "ready",
            "protocol": 1,
            "visitor_token": visitor.token,
            "conversation_id": f"c-{visitor.token[:6]}-{visitor.conversation}",
            "messages": visitor.messages,
            "bot": {"name": BOT["name"], "greeting": BOT["greeting"]},
        }

    def message(self, role: str, text: str, **extra) -> dict:
        return {
            "id": self.new_id(),
            "role": role,
            "text": text,
            "citations": [],
            "status": "complete",
            "feedback": None,
            "staff_name": None,
            "created_at": datetime.now(UTC).isoformat(),
            **extra,
        }

    async def answer(self, sock: Socket, visitor: Visitor, question: str) -> None:
        lowered = question.lower()
        if "fail" in lowered:
            await sock.send(
                {
                    "type": "error",
                    "code": "model_unavailable",
                    "message": "The assistant is unavailable right now.",
                    "retryable": True,
                }
            )
            return
        bot = self.message("bot", "", status="streaming")
        visitor.messages.append(bot)
        await sock.send({"type": "typing", "message_id": bot["id"]})
        if "xss" in lowered:
            full, citations = XSS_ANSWER, XSS_CITATIONS
        elif "slow" in lowered:
            full, citations = " ".join(f"word{i}" for i in range(400)), []
        else:
            full, citations = ANSWER.format(topic=question[:40]), CITATIONS
        words = full.split(" ")
        delay = 0.15 if "slow" in lowered else self.token_delay
        status = "complete"
        try:
            await asyncio.sleep(self.first_token_delay)
            for i in range(0, len(words), 3):
                chunk = " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
                bot["text"] += chunk
                await sock.send({"type": "token", "message_id": bot["id"], "text": chunk})
                if "drop" in lowered and i >= 6:
                    bot.update(text=full, status="complete", citations=citations)
                    sock.kill()
                    return
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            status = "stopped"
        if status == "complete":
            bot["text"] = full
        bot.update(status=status, citations=citations if status == "complete" else [])
        await sock.send(
            {
                "type": "done",
                "message_id": bot["id"],
                "status": status,
                "citations": bot["citations"],
                "text": bot["text"],
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server = FakeParley().start_in_thread(args.port)
    print(f"host page: {server.host_origin}/host.html   chat page: {server.origin}/chat/demo/")
    threading.Event().wait()


if __name__ == "__main__":
    main()
