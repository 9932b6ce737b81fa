"""Set-up for the lead tests: a bot with a complete lead form, its visitors' conversations, and a CRM (a local HTTP
server the test starts) that records what it receives and can fail, or be down, on demand."""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.models import Bot, Conversation

ALLOWED_ORIGIN = "https://www.acme.test"
CONSENT = "I agree that Acme may contact me about my request."
LEAD_FORM = {
    "title": "Talk to our sales team",
    "fields": [
        {"name": "name", "type": "name", "label": "Your name"},
        {"name": "email", "type": "email", "label": "Work email", "required": True},
        {"name": "phone", "type": "phone", "label": "Phone"},
        {"name": "company", "type": "company", "label": "Company"},
        {"name": "size", "type": "select", "label": "Team size", "options": ["1-10", "11-50", "51+"]},
        {"name": "message", "type": "text", "label": "What do you need?"},
        {"name": "consent", "type": "consent", "required": True, "label": CONSENT},
    ],
    "triggers": {
        "before_chat": False,
        "after_messages": 3,
        "cannot_answer": True,
        "no_human": True,
        "buying_intent": True,
    },
}
GOOD = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0958",
    "company": "Analytical Engines",
    "size": "11-50",
    "message": "We'd like a quote for 40 seats.",
    "consent": True,
}
PAGE_URL = "https://www.acme.test/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring&ref=x"


def lead_bot_create(*, slug: str = "acme", lead_form: dict | None = None, **fields) -> Bot:
    return bot_create(
        slug=slug,
        name=slug.title(),
        allowed_origins=[ALLOWED_ORIGIN],
        lead_form=LEAD_FORM if lead_form is None else lead_form,
        with_knowledge_base=False,
        **fields,
    )


def visit(bot: Bot, *, visitor_id: str = "visitor-1", page_url: str = PAGE_URL, language: str = "") -> Conversation:
    return conversation_resume_or_start(
        bot=bot, visitor_id=visitor_id, page_url=page_url, referrer="https://search.test/?q=acme", language=language
    )


@pytest.fixture
def lead_bot(db) -> Bot:
    return lead_bot_create(notification_email="sales@acme.test")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class CRM:
    """A CRM's webhook endpoint on 127.0.0.1. `fail_next(500, 500)` answers the next requests with those codes;
    `stop()` takes it off the network (connection refused) and `start()` brings it back on the same port."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.delay_s = 0.0
        self.reply_body = b"ok"
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/parley"

    def fail_next(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def delivered(self) -> list[Received]:
        return [request for request in self.received if 200 <= request.status < 300]

    def start(self) -> "CRM":
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(crm.delay_s)
                with crm._lock:
                    status = crm.statuses.pop(0) if crm.statuses else 200
                    crm.received.append(Received(dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(crm.reply_body)))
                self.end_headers()
                self.wfile.write(crm.reply_body)

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def crm(settings) -> Iterator[CRM]:
    # The CRM listens on 127.0.0.1, an address webhooks may reach only when private addresses are allowed.
    settings.PARLEY_ALLOW_PRIVATE_URLS = True
    server = CRM().start()
    yield server
    server.stop()
