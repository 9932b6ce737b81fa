"""Answers from the documentation, in real Chromium: a bot with no model server answers a visitor with the pieces of
its documentation that answer the question, rendered as Markdown, with citations "Title › Section"; a bot whose
model server goes down in the middle of an answer shows the notice, and what the documentation says.

The stack is the one of test_widget_e2e.py (a customer's static site with the snippet, Daphne, a Celery worker,
the TGI simulator), with two bots: one without a model (no TGI_URL, no endpoint), one streaming from the simulator.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from playwright.sync_api import Page, expect

from chatbot.answers.texts import ANSWER_TEXTS
from chatbot.bots.services import bot_create
from chatbot.models import Bot, Message
from devtools.stack import ServerProcess
from devtools.tgi_simulator import TGISimulator
from tests.browser.test_widget_e2e import DESKTOP, ask, chat, errors, last_answer, site_page, start_servers, static_site
from tests.chatbot import page_add

pytestmark = [pytest.mark.browser, pytest.mark.django_db]

SHIPPING = """We send parcels from our warehouse in Hamburg.

## Delivery times

| Country | Delivery time |
|---|---|
| Germany | 1-2 business days |
| Norway | 6-8 business days |

## Returns

To return a parcel:

- Print the return label from your account.
- Drop the parcel at any post office within 30 days.
"""
SHIPPING_URL = "https://www.acme.test/help/shipping"
SLOW_ANSWER = " ".join(f"Parcels to Norway take a while, part {n}." for n in range(1, 40))


@dataclass
class Stack:
    daphne: ServerProcess
    worker: ServerProcess
    sim: TGISimulator
    docs_only: Bot
    with_model: Bot
    site: str

    def logs(self) -> str:
        return f"--- daphne ---\n{self.daphne.log()[-4000:]}\n--- worker ---\n{self.worker.log()[-4000:]}"


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("browser-logs")
    site_dir = tmp_path_factory.mktemp("site")
    redis_url = settings.REDIS_URL
    redis.Redis.from_url(redis_url).flushdb()
    with (
        pytest.MonkeyPatch.context() as env,
        django_db_blocker.unblock(),
        TGISimulator() as sim,
        static_site(site_dir) as port,
    ):
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # see test_widget_e2e.stack
        site = f"http://127.0.0.1:{port}"
        daphne, worker = start_servers(logs=logs, redis_url=redis_url)
        try:
            docs_only = bot_create(slug="docs-only", name="Acme Docs", allowed_origins=[site])
            with_model = bot_create(slug="with-model", name="Acme", allowed_origins=[site], model_endpoint=sim.url)
            for bot in (docs_only, with_model):
                page_add(bot, title="Shipping", url=SHIPPING_URL, text=SHIPPING)
                page = site_page(
                    title=f"Help – {bot.name}",
                    body="<h1>Help centre</h1>",
                    snippet=f'<script src="{daphne.url}/widget.js" data-bot="{bot.public_id}" async></script>',
                )
                (site_dir / f"{bot.slug}.html").write_text(page)
            yield Stack(daphne=daphne, worker=worker, sim=sim, docs_only=docs_only, with_model=with_model, site=site)
        finally:
            for server in (daphne, worker):
                server.process.terminate()
            daphne.stop()
            worker.stop()
            call_command("flush", interactive=False, verbosity=0)
            redis.Redis.from_url(redis_url).flushdb()
            connections.close_all()


@pytest.fixture
def new_page(browser, stack) -> Iterator[Callable[..., Page]]:
    contexts = []

    def open_page(bot: Bot) -> Page:
        context = browser.new_context(viewport=DESKTOP)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.console_messages = []
        page.errors = []
        page.on("console", lambda message: page.console_messages.append(message))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(f"{stack.site}/{bot.slug}.html")
        page.locator("parley-widget button.l").click()
        expect(chat(page).locator("#handoff-button")).to_be_enabled()
        return page

    yield open_page
    for context in contexts:
        context.close()


def test_without_a_model_a_visitor_gets_a_readable_answer_from_the_documentation_with_its_source(new_page, stack):
    page = new_page(stack.docs_only)

    ask(page, "How do I return a parcel?")
    answer = last_answer(page)
    expect(answer.locator(".feedback")).to_have_count(1)

    bubble = answer.locator(".bubble")
    expect(bubble).to_contain_text("From our documentation:")
    items = bubble.locator("ul > li")
    expect(items.filter(has_text="Drop the parcel at any post office within 30 days.")).to_have_count(1)
    expect(items.filter(has_text="Print the return label from your account.")).to_have_count(1)
    assert "|" not in bubble.text_content() and "- Print" not in bubble.text_content(), "rendered, not flattened"
    source = answer.locator(".citations li a").first
    expect(source).to_have_text("Shipping › Returns")
    expect(source).to_have_attribute("href", f"{SHIPPING_URL}#returns")
    expect(answer).not_to_contain_text("unavailable")
    expect(answer.locator(".msg-note")).to_have_count(0)
    message = Message.objects.get(id=int(answer.get_attribute("data-id")))
    assert (message.status, message.finish_reason) == ("retrieval_only", "not_configured")
    assert errors(page) == []


def test_without_a_model_a_table_in_the_documentation_is_shown_as_a_table(new_page, stack):
    page = new_page(stack.docs_only)

    ask(page, "How long does delivery to Norway take?")
    answer = last_answer(page)
    expect(answer.locator(".feedback")).to_have_count(1)

    table = answer.locator(".bubble table")
    expect(table.locator("th")).to_have_text(["Country", "Delivery time"])
    expect(table.locator("tr").filter(has_text="Norway").locator("td")).to_have_text(["Norway", "6-8 business days"])
    expect(answer.locator(".citations li a").first).to_have_text("Shipping › Delivery times")


def test_when_the_model_server_goes_down_mid_answer_the_visitor_sees_the_notice_and_the_documentation(new_page, stack):
    stack.sim.reset()
    stack.sim.configure(ttft_s=0.1, tokens_per_s=5, script_text=SLOW_ANSWER)
    page = new_page(stack.with_model)
    try:
        ask(page, "How do I return a parcel?")
        expect(chat(page).locator(".bubble.is-streaming")).to_contain_text("Parcels to Norway")
        stack.sim.stop_listening()  # the model server dies: its open stream is cut

        expect(chat(page).locator(".msg-error-text")).to_have_text(ANSWER_TEXTS["answer_cut_off"]["en"])
    finally:
        stack.sim.start_listening()
    answer = last_answer(page)
    expect(answer.locator(".msg-note")).to_have_text(re.compile("could not be completed"))
    bubble = answer.locator(".bubble")
    expect(bubble).to_contain_text("Parcels to Norway")
    expect(bubble).to_contain_text("From our documentation:")
    expect(bubble.locator("ul > li").filter(has_text="Drop the parcel at any post office")).to_have_count(1)
    expect(answer.locator(".citations li a").filter(has_text="Shipping › Returns")).to_have_count(1)
