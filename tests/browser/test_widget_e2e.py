"""The chat widget end to end, in real Chromium, on a customer's website.

The website is a plain static site (a second local HTTP server) whose pages carry the embed snippet. Parley is a
real Daphne process (the loader, the chat page, the websocket), answers come from a real Celery worker that
retrieves from the bot's knowledge base (PostgreSQL + pgvector, real embeddings) and streams from the TGI
simulator through the Redis channel layer. The website is on http://127.0.0.1:PORT, which the bot allows; the
same site seen as http://localhost:PORT is another origin, which it does not.

Daphne, the worker and the simulator serve the whole module. They are other processes, so the data is committed:
the module sets it up once with the database unblocked and flushes the database when it is done.

PARLEY_SCREENSHOTS=1 also writes docs/screenshots/widget-desktop.png and docs/screenshots/widget-phone.png.
"""

import gzip
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from playwright.sync_api import Frame, Page, expect

from chatbot.bots.services import bot_create
from chatbot.celery import app as celery_app
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Bot, Conversation, Message
from devtools.browser import eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess
from devtools.tgi_simulator import TGISimulator
from knowledge.models import Source
from knowledge.services import source_add_faq, source_add_url
from knowledge.tasks import ingest_source

# django_db: for pytest-django to create the test database; each test only reads, inside a transaction it rolls
# back, what the module committed and what Daphne and the worker commit.
pytestmark = [pytest.mark.browser, pytest.mark.django_db]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TOKENS_PER_S = 30
STAFF_PASSWORD = "staff-password-for-the-widget-tests"
LOADER_BUDGET_GZ = 4 * 1024
CHAT_PAGE_BUDGET_GZ = 40 * 1024

FAQS = [
    ("Do you ship abroad?", "Yes. We ship to every country in the European Union, to Switzerland and to the UK."),
    ("How do I return an item?", "Returns are free for 30 days: print the label from your order page."),
]
SHIPPING_PAGE = (
    "Shipping times",
    "Orders placed before noon leave our warehouse the same day. Delivery takes two to four business days in "
    "Europe. Every parcel is tracked, and the tracking link arrives by e-mail as soon as the parcel leaves.",
)
# Cites three passages; the model gets those relevant enough to the question (knowledge.passages), in an order the
# test does not need to know.
ANSWER = (
    "Orders placed before noon leave our warehouse **the same day** [1]. Delivery takes two to four business days "
    "in Europe [2], and returns are free for 30 days [3]."
)
LONG_ANSWER = " ".join(f"Step {n}: check that the parcel label is readable." for n in range(1, 60))
XSS_ANSWER = (
    '<img src=x onerror="window.__pwned=1">\n\n'
    "[click](javascript:window.__pwned=1)\n\n"
    "<script>window.__pwned=1</script>"
)


# --- the stack -----------------------------------------------------------------------------------------------


class _SiteHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextmanager
def static_site(directory: Path) -> Iterator[int]:
    """A customer's website: `directory` served over HTTP on 127.0.0.1; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_SiteHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def site_page(*, title: str, body: str, snippet: str = "") -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <style>
    body {{ margin: 0; font: 16px/1.6 Georgia, serif; color: #1c1917; background: #fafaf9; }}
    header {{ padding: 18px 40px; background: #134e4a; color: #f0fdfa; font: 700 20px system-ui, sans-serif; }}
    main {{ max-width: 680px; padding: 24px 40px; }}
  </style>
</head>
<body>
  <header>Acme Outdoor</header>
  <main>{body}</main>
  {snippet}
</body>
</html>
"""


@dataclass
class Stack:
    daphne: ServerProcess
    worker: ServerProcess
    sim: TGISimulator
    bot: Bot
    site: str  # the customer's website, an allowed origin
    other_site: str  # the same pages from an origin the bot does not allow
    shipping_url: str

    def logs(self) -> str:
        """The ends of the servers' logs (conftest.py adds them to the report of a failed test)."""
        return f"--- daphne ---\n{self.daphne.log()[-4000:]}\n--- worker ---\n{self.worker.log()[-4000:]}"


def start_servers(*, logs: Path, redis_url: str) -> tuple[ServerProcess, ServerProcess]:
    """Daphne and a Celery worker, started side by side, on the test database and `redis_url`."""
    env = {
        "REDIS_URL": redis_url,
        # This process sets it for Playwright's sake (see `stack`); the servers keep Django's guard.
        "DJANGO_ALLOW_ASYNC_UNSAFE": "",
        "CHAT_MESSAGES_PER_MINUTE_PER_IP": "1000",
        "CHAT_MESSAGES_PER_MINUTE_PER_VISITOR": "1000",
    }
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(start_daphne, log_path=logs / "daphne.log", **env),
            pool.submit(start_celery_worker, log_path=logs / "worker.log", concurrency=4, **env),
        ]
    started = [future.result() for future in futures if future.exception() is None]
    if len(started) < 2:
        for server in started:
            server.stop()
        raise next(future.exception() for future in futures if future.exception() is not None)
    return started[0], started[1]


def knowledge_ingest(*, sources: list[Source], redis_url: str, worker: ServerProcess) -> None:
    """Ingest through the worker, as the dashboard does: it loads its embedding model before the first answer."""
    with celery_app.connection_for_write(redis_url) as connection:
        for source in sources:
            ingest_source.apply_async((source.id,), connection=connection)
    try:
        eventually(
            lambda: (
                Source.objects.filter(id__in=[s.id for s in sources], status=Source.Status.READY).count()
                == len(sources)
            ),
            timeout_s=60,
            what="the sources to be ingested",
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; worker log:\n{worker.log()[-3000:]}") from None


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("browser-logs")
    site_dir = tmp_path_factory.mktemp("site")
    (site_dir / "help").mkdir()
    title, text = SHIPPING_PAGE
    (site_dir / "help" / "shipping.html").write_text(
        site_page(title=title, body=f"<article><h1>{title}</h1><p>{text}</p></article>")
    )
    # The test run's own Redis database (see devtools.pytest_plugin): empty it of earlier modules' tasks.
    redis_url = settings.REDIS_URL
    redis.Redis.from_url(redis_url).flushdb()
    with (
        pytest.MonkeyPatch.context() as env,
        django_db_blocker.unblock(),
        TGISimulator() as sim,
        static_site(site_dir) as port,
    ):
        # Playwright's sync API keeps an event loop running in this thread, which Django's guard takes for async
        # code. The ORM calls here are plain synchronous ones, between browser steps.
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        site = f"http://127.0.0.1:{port}"
        daphne, worker = start_servers(logs=logs, redis_url=redis_url)
        try:
            bot = bot_create(
                slug="acme",
                name="Acme Outdoor",
                greeting="Hi! I'm Acme's assistant. Ask me about **shipping** and **returns**.",
                color="#0f766e",
                allowed_origins=[site],
                model_endpoint=sim.url,
            )
            sources = [source_add_faq(knowledge_base=bot.knowledge_base, question=q, answer=a) for q, a in FAQS]
            sources.append(
                source_add_url(
                    knowledge_base=bot.knowledge_base, url=f"{site}/help/shipping.html", allow_private_addresses=True
                )
            )
            knowledge_ingest(sources=sources, redis_url=redis_url, worker=worker)
            staff_member_save(username="sam", role="admin", password=STAFF_PASSWORD)
            snippet = f'<script src="{daphne.url}/widget.js" data-bot="{bot.public_id}" async></script>'
            (site_dir / "index.html").write_text(
                site_page(
                    title="Help centre – Acme Outdoor",
                    body="<h1>Help centre</h1><p>Questions about an order? Our assistant answers from our help "
                    'pages, day and night. <a href="/help/shipping.html">Shipping times</a></p>',
                    snippet=snippet,
                )
            )
            yield Stack(
                daphne=daphne,
                worker=worker,
                sim=sim,
                bot=bot,
                site=site,
                other_site=f"http://localhost:{port}",
                shipping_url=f"{site}/help/shipping.html",
            )
        finally:
            for server in (daphne, worker):  # both shut down at once: each takes a few seconds
                server.process.terminate()
            daphne.stop()
            worker.stop()
            call_command("flush", interactive=False, verbosity=0)
            redis.Redis.from_url(redis_url).flushdb()
            # The teardown may run in another context than the set-up (so on another connection): close it, or
            # the test database cannot be dropped at the end of the run.
            connections.close_all()


@pytest.fixture
def sim(stack) -> TGISimulator:
    stack.sim.reset()
    stack.sim.configure(ttft_s=0.1, tokens_per_s=TOKENS_PER_S, script_text=ANSWER)
    return stack.sim


@pytest.fixture
def new_page(browser, stack) -> Iterator[Callable[..., Page]]:
    """Opens a page in a fresh browser profile (a new visitor); collects the errors its frames log."""
    contexts = []

    def open_page(*, viewport=DESKTOP, **options) -> Page:
        context = browser.new_context(viewport=viewport, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.console_messages = []
        page.errors = []
        page.on("console", lambda message: page.console_messages.append(message))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        return page

    yield open_page
    for context in contexts:
        context.close()


# --- driving the widget --------------------------------------------------------------------------------------


def launcher(page: Page):
    return page.locator("parley-widget button.l")


def chat(page: Page):
    return page.frame_locator("parley-widget iframe")


def chat_frame(page: Page) -> Frame:
    return eventually(lambda: page.frame(url=re.compile(r"/chat/")), what="the chat iframe")


def open_chat(page: Page) -> None:
    launcher(page).click()
    expect(chat(page).locator("#handoff-button")).to_be_enabled()  # the socket is ready


def ask(page: Page, text: str) -> None:
    chat(page).locator("#composer-input").fill(text)
    chat(page).locator("#composer-input").press("Enter")


def last_answer(page: Page):
    return chat(page).locator(".msg-bot[data-id]").last


def wait_done(page: Page):
    answer = last_answer(page)
    expect(answer.locator(".feedback")).to_have_count(1)
    return answer


def errors(page: Page) -> list[str]:
    """Script errors and console errors (CSP violations among them), the host page's missing favicon aside."""
    logged = [m.text for m in page.console_messages if m.type == "error" and "favicon" not in m.location.get("url", "")]
    return page.errors + logged


def saved(answer) -> Message:
    return Message.objects.get(id=int(answer.get_attribute("data-id")))


def record_partial_texts(frame: Frame) -> None:
    """From now on, remember every text the streaming bubble shows (the bubble is replaced when the answer ends)."""
    frame.evaluate(
        """() => {
            window.__partials = [];
            new MutationObserver(() => {
                const bubble = document.querySelector('.bubble.is-streaming');
                const text = bubble && bubble.textContent;
                if (text && text !== window.__partials.at(-1)) window.__partials.push(text);
            }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
        }"""
    )


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("PARLEY_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / name))


# --- the tests -----------------------------------------------------------------------------------------------


def test_a_visitor_asks_sees_the_answer_stream_with_its_sources_and_votes(new_page, stack, sim):
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    expect(chat(page).locator("#composer-input")).to_be_focused()
    expect(launcher(page)).to_have_css("background-color", "rgb(15, 118, 110)")  # the bot's colour
    record_partial_texts(chat_frame(page))

    ask(page, "How long does shipping take?")
    answer = wait_done(page)

    partials = chat_frame(page).evaluate("window.__partials")
    # It grew while streaming (not strictly: "**the" shrinks to a bold "the" once its "**" closes).
    assert len(partials) >= 2 and len(partials[0]) < len(partials[-1]), partials
    bubble = answer.locator(".bubble")
    expect(bubble).to_contain_text("Orders placed before noon leave our warehouse the same day")
    expect(bubble.locator("strong")).to_have_text("the same day")
    assert len(partials[0]) < len(bubble.text_content())

    # Only the passage relevant enough went to the model (knowledge.passages): the web page, not the FAQ entries
    # on returns and shipping abroad; so the answer's [2] and [3] name no source.
    titles = answer.locator(".citations li").all_text_contents()
    assert titles == ["Shipping times"]
    source = answer.locator(".citations li a")
    expect(source).to_have_count(1)
    expect(source).to_have_text("Shipping times")
    expect(source).to_have_attribute("href", stack.shipping_url)
    expect(source).to_have_attribute("target", "_blank")
    assert "noopener" in source.get_attribute("rel").split()
    expect(bubble.locator("a.cite")).to_have_attribute("href", stack.shipping_url)
    message = saved(answer)
    assert message.status == Message.Status.COMPLETE
    assert message.text == ANSWER
    assert [c["title"] for c in message.citations] == ["Shipping times"]
    assert {p["title"] for p in message.retrieved if not p["sent"]} == {q for q, _ in FAQS}

    helpful = answer.get_by_role("button", name="Helpful", exact=True)
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    eventually(lambda: Message.objects.get(id=message.id).feedback == "up", what="the vote to be saved")
    assert errors(page) == []
    assert page.context.cookies() == []  # docs/widget.md says the chat sets none
    screenshot(page, "widget-desktop.png")


def test_stop_ends_the_answer_where_it_is(new_page, stack, sim):
    sim.configure(script_text=LONG_ANSWER)
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    ask(page, "How do I check a parcel label?")
    streaming = chat(page).locator(".bubble.is-streaming")
    expect(streaming).to_contain_text("Step 3:")

    chat(page).locator("#stop-button").click()
    answer = last_answer(page)
    expect(answer.locator(".msg-note")).to_have_text("Answer stopped.")
    text = answer.locator(".bubble").text_content()
    time.sleep(1)  # at 30 tokens a second, a running stream would add about 30 tokens
    assert answer.locator(".bubble").text_content() == text
    assert 0 < len(text) < len(LONG_ANSWER) / 2
    message = saved(answer)
    assert message.status == Message.Status.STOPPED
    assert LONG_ANSWER.startswith(message.text)
    expect(chat(page).locator("#send-button")).to_be_visible()


def test_the_conversation_is_still_there_after_a_reload(new_page, stack, sim):
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    ask(page, "How many days does delivery take?")
    wait_done(page)
    conversations = Conversation.objects.filter(bot=stack.bot).count()

    page.reload()
    open_chat(page)
    expect(chat(page).locator(".msg-visitor .bubble")).to_have_text(["How many days does delivery take?"])
    answer = last_answer(page)
    expect(answer.locator(".bubble")).to_contain_text("Delivery takes two to four business days")
    expect(answer.locator(".citations li a")).to_have_attribute("href", stack.shipping_url)
    assert Conversation.objects.filter(bot=stack.bot).count() == conversations  # resumed, not started again
    assert saved(answer).text == ANSWER


def test_new_conversation_clears_the_chat_and_the_dashboard_keeps_both_conversations(new_page, stack, sim):
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    ask(page, "Do you ship abroad?")
    first = saved(wait_done(page))
    # A staff member is looking at the conversation.
    staff = new_page()
    staff.goto(f"{stack.daphne.url}/dashboard/login/?next=/dashboard/conversations/{first.conversation_id}/")
    staff.fill("input[name=username]", "sam")
    staff.fill("input[name=password]", STAFF_PASSWORD)
    staff.click("button[type=submit]")
    expect(staff.locator("#live-status")).to_have_text("Live")
    expect(staff.locator("#visitor-left")).to_be_hidden()

    chat(page).get_by_role("button", name="New conversation").click()

    expect(chat(page).locator(".msg-visitor")).to_have_count(0)
    expect(chat(page).locator(".msg-bot")).to_have_count(1)
    expect(chat(page).locator(".msg-bot")).to_contain_text("Hi! I'm Acme's assistant.")  # the greeting
    expect(chat(page).locator("#composer-input")).to_be_focused()
    ask(page, "How do I return an item?")
    answer = wait_done(page)
    expect(answer.locator(".bubble")).to_contain_text("returns are free for 30 days")
    second = saved(answer)
    assert second.conversation_id != first.conversation_id
    old, new = Conversation.objects.get(id=first.conversation_id), Conversation.objects.get(id=second.conversation_id)
    assert new.visitor_id == old.visitor_id
    assert list(old.messages.order_by("id").values_list("role", "text")) == [
        ("visitor", "Do you ship abroad?"),
        ("bot", ANSWER),
    ]
    expect(chat(page).locator(".msg-visitor .bubble")).to_have_text(["How do I return an item?"])
    # The staff member's transcript of the old conversation says the visitor moved on, and where to.
    expect(staff.locator("#visitor-left")).to_be_visible()
    expect(staff.locator("#visitor-left a")).to_have_attribute("href", f"/dashboard/conversations/{new.id}/")
    expect(staff.locator("#messages > li[data-message-id]")).to_have_count(2)  # nothing of the new conversation

    page.reload()  # the visitor comes back to the new conversation, not the old one
    open_chat(page)
    expect(chat(page).locator(".msg-visitor .bubble")).to_have_text(["How do I return an item?"])

    staff.goto(f"{stack.daphne.url}/dashboard/")
    rows = staff.locator("tr[data-conversation-id]")
    expect(rows.filter(has=staff.locator(f'a[href$="/conversations/{old.id}/"]'))).to_contain_text(
        "Do you ship abroad?"
    )
    expect(rows.filter(has=staff.locator(f'a[href$="/conversations/{new.id}/"]'))).to_contain_text(
        "How do I return an item?"
    )
    assert errors(page) == []
    assert errors(staff) == []


def test_new_conversation_while_an_answer_streams_stops_it_and_shows_none_of_it(new_page, stack, sim):
    sim.configure(script_text=LONG_ANSWER)
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    ask(page, "How do I check a parcel label?")
    expect(chat(page).locator(".bubble.is-streaming")).to_contain_text("Step 3:")

    chat(page).get_by_role("button", name="New conversation").click()

    expect(chat(page).locator(".msg-visitor")).to_have_count(0)
    question = Message.objects.filter(text="How do I check a parcel label?").latest("id")
    answer = Message.objects.get(in_reply_to=question)
    eventually(
        lambda: Message.objects.get(id=answer.id).status == Message.Status.STOPPED, what="the old answer to stop"
    )
    time.sleep(0.5)  # at 30 tokens a second, a stream still shown would add about 15
    expect(chat(page).locator(".msg-bot")).to_have_count(1)  # the greeting, nothing of the old answer
    expect(chat(page).locator("#send-button")).to_be_visible()
    assert errors(page) == []


def test_only_sites_in_the_allowed_origins_can_embed_the_chat(new_page, stack, sim):
    allowed = new_page()
    allowed.goto(f"{stack.site}/")
    open_chat(allowed)
    ask(allowed, "How do I return an item?")
    expect(wait_done(allowed).locator(".bubble")).to_contain_text("returns are free for 30 days")
    conversations = Conversation.objects.filter(bot=stack.bot).count()

    refused = new_page()
    refused.goto(f"{stack.other_site}/")
    eventually(
        lambda: any("frame-ancestors" in m.text for m in refused.console_messages),
        what="Chromium to refuse the frame",
    )
    # The chat page never loaded, so it never said it was ready: no button, nothing to open.
    expect(chat(refused).locator("#composer-input")).to_have_count(0)
    expect(launcher(refused)).to_be_hidden()
    # Nor can the site's own scripts open the chat socket.
    socket = refused.evaluate(
        """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            const frames = [];
            ws.onopen = () => ws.send(JSON.stringify({type: 'hello', protocol: 1, visitor_token: null}));
            ws.onmessage = (event) => frames.push(JSON.parse(event.data));
            ws.onclose = (event) => resolve({code: event.code, frames});
        })""",
        f"{stack.daphne.url.replace('http', 'ws')}/ws/chat/{stack.bot.public_id}/",
    )
    assert socket["code"] == 4403
    assert [frame["type"] for frame in socket["frames"]] == ["error"]
    assert socket["frames"][0]["code"] == "forbidden"
    assert Conversation.objects.filter(bot=stack.bot).count() == conversations


def test_on_a_phone_the_chat_opens_full_screen(new_page, stack, sim):
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(f"{stack.site}/")
    launcher(page).tap()
    expect(chat(page).locator("#handoff-button")).to_be_enabled()
    panel = page.locator("parley-widget .p")
    eventually(lambda: panel.bounding_box() == {"x": 0, "y": 0, **PHONE}, what="the panel to fill the screen")
    expect(launcher(page)).to_be_hidden()  # the chat's own header has the close button
    ask(page, "How long does shipping take?")
    expect(wait_done(page).locator(".citations li a")).to_have_count(1)
    screenshot(page, "widget-phone.png")

    chat(page).locator("#close-button").tap()
    expect(panel).to_be_hidden()
    expect(launcher(page)).to_be_visible()
    assert errors(page) == []


def test_a_hostile_answer_is_shown_as_inert_text(new_page, stack, sim):
    sim.configure(script_text=XSS_ANSWER)
    page = new_page()
    page.goto(f"{stack.site}/")
    open_chat(page)
    frame = chat_frame(page)
    frame.evaluate(
        "() => { window.__violations = [];"
        " document.addEventListener('securitypolicyviolation', (e) => __violations.push(e.violatedDirective)); }"
    )
    ask(page, "Tell me something nasty")
    answer = wait_done(page)
    bubble = answer.locator(".bubble")
    expect(bubble).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(bubble).to_contain_text("<script>window.__pwned=1</script>")
    expect(bubble).to_contain_text("click")
    assert bubble.locator("img, script, [onerror], a").count() == 0  # the javascript: link is not a link either
    bubble.get_by_text("click").click()
    page.wait_for_timeout(300)  # time for an image error handler or a click to run
    assert frame.evaluate("[typeof window.__pwned, window.__violations]") == ["undefined", []]
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert saved(answer).text == XSS_ANSWER  # stored as the model wrote it; only the rendering is inert


def test_the_loader_and_the_chat_page_stay_small(new_page, stack, sim):
    page = new_page()
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.goto(f"{stack.site}/")
    open_chat(page)

    def gzipped(response) -> int:
        return len(gzip.compress(response.body(), compresslevel=9))

    from_parley = [r for r in responses if r.url.startswith(stack.daphne.url) and r.status == 200]
    loader = sum(gzipped(r) for r in from_parley if r.url.endswith("/widget.js"))
    chat_page = {r.url: gzipped(r) for r in from_parley if not r.url.endswith("/widget.js")}
    print(json.dumps({"loader_gz": loader, "chat_page_gz": sum(chat_page.values()), "chat_page": chat_page}))
    assert any("/chat/" in url for url in chat_page) and any(url.endswith(".css") for url in chat_page)
    assert 0 < loader <= LOADER_BUDGET_GZ
    assert sum(chat_page.values()) <= CHAT_PAGE_BUDGET_GZ
