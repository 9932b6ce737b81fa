"""Real Chromium against a real Daphne: browser notifications in the dashboard (the permission granted by the
test, the Notifications API observed as the page calls it), and verified visitors in the widget (the loader's
data-user-* attributes, the lead form filled in, a forged hash ignored with a console warning).

The servers are other processes, so the module commits its data (with the database unblocked) and flushes it at
the end. Without Debian's Chromium the tests skip (fail with PARLEY_REQUIRE_BROWSER=1)."""

import threading
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.db import connections

from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.chat.handoff import handoff_request
from chatbot.chat.identity import identity_hash
from chatbot.chat.staff import conversation_take_over
from chatbot.dashboard.services import staff_member_save
from devtools.browser import chromium, eventually
from devtools.pytest_plugin import start_daphne
from tests.leads.conftest import LEAD_FORM

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db]

PASSWORD = "correct-horse-battery"
# Records each notification the page makes, then lets the real one be made.
NOTIFICATIONS_RECORDER = """
(() => {
  if (!("Notification" in window)) return;
  const Real = window.Notification;
  window.__notifications = [];
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: (options && options.body) || "" });
    }
  };
})();
"""


class ShopSite:
    """The customer's website on 127.0.0.1 (Chromium lets only a local page load a local Parley): a page with the
    loader and the script tag's `attributes`."""

    def __init__(self) -> None:
        self.parley_url, self.public_id, self.attributes = "", "", ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                attributes = site.attributes
                body = (
                    "<!DOCTYPE html><html lang='en'><head><title>Acme shop</title></head><body><h1>Tents</h1>"
                    f"<script src='{site.parley_url}/widget.js' data-bot='{site.public_id}' data-open {attributes} "
                    "async></script></body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def browser(django_db_setup) -> Iterator:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("notify-logs")
    with pytest.MonkeyPatch.context() as env, django_db_blocker.unblock():
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # Playwright's loop in this thread; ORM calls are plain sync
        daphne, site = None, ShopSite()
        try:
            # The lead form comes with `ready`, where a verified visitor's name and email fill it.
            lead_form = {**LEAD_FORM, "triggers": {**LEAD_FORM["triggers"], "before_chat": True}}
            bot = bot_create(slug="acme", name="Acme Outdoor", allowed_origins=[site.url], lead_form=lead_form)
            alan = staff_member_save(username="alan", role="admin", display_name="Alan", password=PASSWORD).user
            daphne = start_daphne(log_path=logs / "daphne.log", DJANGO_ALLOW_ASYNC_UNSAFE="")
            site.parley_url, site.public_id = daphne.url, bot.public_id
            yield {"url": daphne.url, "bot": bot, "alan": alan, "daphne": daphne, "site": site}
        finally:
            site.stop()
            if daphne is not None:
                daphne.stop()
            call_command("flush", interactive=False, verbosity=0)
            connections.close_all()


def test_a_handoff_request_and_a_visitors_message_show_as_browser_notifications(
    browser, stack, django_capture_on_commit_callbacks
):
    from playwright.sync_api import expect

    url, bot, alan = stack["url"], stack["bot"], stack["alan"]
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=url)
    context.add_init_script(NOTIFICATIONS_RECORDER)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{url}/dashboard/")
        page.fill("input[name=username]", "alan")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#live-status")).to_have_text("Live")
        expect(page.locator("#notify-state")).to_have_text("Notifications on")
        page.check("#notify-sound")  # the sound option: a tone, and the choice is kept

        conversation = conversation_resume_or_start(
            bot=bot, visitor_id="visitor-1", page_url="https://shop.acme.test/tents"
        )
        message_receive(conversation=conversation, text="My tent pole broke.", dispatch_answer=False, answer=False)
        eventually(lambda: handoff_request(conversation=conversation).status == "requested", what="Alan online")

        notes = eventually(lambda: page.evaluate("window.__notifications"), what="a notification", timeout_s=15)
        assert notes[0]["title"] == "Acme Outdoor: a visitor asks for a person"
        assert "My tent pole broke." in notes[0]["body"]

        with django_capture_on_commit_callbacks(execute=True):
            conversation_take_over(conversation=conversation, user=alan)
        with django_capture_on_commit_callbacks(execute=True):
            message_receive(conversation=conversation, text="It is the blue one.", dispatch_answer=False)
        notes = eventually(
            lambda: (found := page.evaluate("window.__notifications")) and len(found) >= 2 and found,
            what="a second notification",
            timeout_s=15,
        )
        assert notes[-1] == {"title": "Acme Outdoor: the visitor wrote", "body": "It is the blue one."}
        assert page.evaluate("localStorage.getItem('parley:notify-sound')") == "1"
    finally:
        context.close()


def _open_shop(browser, stack, *, attributes: str):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    warnings: list[str] = []
    page.on("console", lambda message: message.type == "warning" and warnings.append(message.text))
    stack["site"].attributes = attributes
    page.goto(f"{stack['site'].url}/")
    # The iframe is in the loader's shadow root: Playwright's selectors go through open shadow roots.
    chat = page.wait_for_selector("iframe[src*='/chat/']", state="attached").content_frame()
    return context, page, chat, warnings


def test_a_verified_visitor_finds_their_name_and_email_in_the_lead_form(browser, stack):
    from playwright.sync_api import expect

    bot = stack["bot"]
    user_hash = identity_hash(secret=bot.identity_secret, user_id="user-42")
    attributes = (
        f"data-user-id='user-42' data-user-hash='{user_hash}' data-name='Ada Lovelace' data-email='ada@example.com'"
    )
    context, page, chat, warnings = _open_shop(browser, stack, attributes=attributes)
    try:
        chat.locator(".lead-form").wait_for()  # before_chat: the form comes with `ready`
        expect(chat.locator(".lead-field-email input")).to_have_value("ada@example.com")
        expect(chat.locator(".lead-field-name input")).to_have_value("Ada Lovelace")
        assert not [w for w in warnings if "Parley" in w]
        # The hash travels in the iframe's #fragment, which browsers never send to a server.
        frame_src = page.locator("iframe[src*='/chat/']").get_attribute("src")
        assert user_hash in frame_src.split("#", 1)[1] and user_hash not in frame_src.split("#", 1)[0]
    finally:
        context.close()


def test_a_forged_hash_is_ignored_with_a_console_warning(browser, stack):
    from playwright.sync_api import expect

    context, page, chat, warnings = _open_shop(
        browser, stack, attributes="data-user-id='user-42' data-user-hash='0000' data-email='ada@example.com'"
    )
    try:
        chat.locator(".lead-form").wait_for()
        expect(chat.locator(".lead-field-email input")).to_have_value("")
        # Console events reach this thread only while Playwright runs: wait through it, not with time.sleep.
        for _ in range(100):
            if any("identity was not verified" in w for w in warnings):
                break
            page.wait_for_timeout(100)
        assert any("identity was not verified" in w for w in warnings), warnings
        # Parley.identify() later, with the right hash: the chat continues as that user.
        bot = stack["bot"]
        good = identity_hash(secret=bot.identity_secret, user_id="user-7")
        page.evaluate(f"Parley.identify({{id: 'user-7', hash: '{good}', name: 'Grace', email: 'grace@example.com'}})")
        eventually(
            lambda: bot.conversations.filter(visitor_verified=True, visitor_name="Grace").exists(),
            what="the identified conversation",
        )
    finally:
        with suppress(Exception):
            context.close()
