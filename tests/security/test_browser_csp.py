"""The Content-Security-Policy in real Chromium: every dashboard page (and the home page with the demo widget, and
the admin) loads with nothing blocked, and the dashboard is still live over its websocket. Without Debian's
Chromium this skips (fails with PARLEY_REQUIRE_BROWSER=1), like tests/browser."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from chatbot.bots.services import DEMO_BOT_SLUG, bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Lead, Message
from devtools.browser import chromium, eventually
from devtools.pytest_plugin import start_daphne
from knowledge.services import source_add_faq

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct-horse-battery"
# Runs in every frame before the page's own scripts: keeps each CSP violation the browser reports.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


@pytest.mark.django_db(transaction=True)
def test_every_dashboard_page_loads_under_the_csp_with_nothing_blocked_and_stays_live(tmp_path):
    bot = bot_create(slug="acme", name="Acme", allowed_origins=["https://www.acme.test"], color="#0f766e")
    bot_create(slug=DEMO_BOT_SLUG, name="Demo", allowed_origins=[])
    member = staff_member_save(username="ada", role="admin", display_name="Ada", password=PASSWORD)
    conversation = conversation_resume_or_start(bot=bot, visitor_id="visitor-1")
    question = Message.objects.create(conversation=conversation, role="visitor", text="Do you ship abroad?")
    citations = [{"n": 1, "title": "Shipping", "url": "https://www.acme.test/shipping"}]
    Message.objects.create(
        conversation=conversation, role="bot", in_reply_to=question, text="Yes [1].", citations=citations
    )
    lead = Lead.objects.create(bot=bot, conversation=conversation, email="v@x.test", name="Vi")
    source_add_faq(knowledge_base=bot.knowledge_base, question="Do you ship abroad?", answer="Yes.")
    admin_session = Client()
    admin_session.force_login(get_user_model().objects.create_superuser("root", "root@example.test", PASSWORD))
    pages = [
        "/",
        "/dashboard/",
        f"/dashboard/conversations/{conversation.id}/",
        "/dashboard/quality/",
        "/dashboard/analytics/",
        "/dashboard/leads/",
        "/dashboard/bots/",
        "/dashboard/bots/new/",
        f"/dashboard/bots/{bot.slug}/",
        f"/dashboard/bots/{bot.slug}/knowledge/",
        f"/dashboard/bots/{bot.slug}/leads/",
        f"/dashboard/bots/{bot.slug}/leads/{lead.id}/",
        "/dashboard/staff/",
        f"/dashboard/staff/{member.id}/",
    ]
    daphne = start_daphne(log_path=tmp_path / "daphne.log")
    try:
        with chromium() as browser:
            context = browser.new_context()
            context.add_init_script(RECORD_VIOLATIONS)
            page = context.new_page()
            page.set_default_timeout(30_000)  # two busy cores: a live update can take seconds
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else 0)

            page.goto(f"{daphne.url}/dashboard/login/")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{daphne.url}/dashboard/")
            violations, live = {}, []
            for path in pages:
                page.goto(f"{daphne.url}{path}")
                page.wait_for_load_state("networkidle")
                found = [v for frame in page.frames for v in frame.evaluate("window.__cspViolations || []")]
                if found:
                    violations[path] = found
                if page.locator("#live-status").count():
                    # The dashboard's websocket connects under connect-src.
                    page.wait_for_selector("#live-status[data-state=live]")
                    live.append(path)
                if path == "/":
                    # The demo widget's loader ran, and framed the chat page, which came up.
                    page.wait_for_selector("parley-widget", state="attached")
                    chat = eventually(lambda: next((f for f in page.frames if "/chat/" in f.url), None), what="chat")
                    chat.wait_for_selector("#composer-input", state="attached")
                if path == f"/dashboard/bots/{bot.slug}/":
                    assert page.frame_locator("#preview").locator("#composer-input").count() == 1

            # A visitor's message appears in the open conversation list without a reload.
            page.goto(f"{daphne.url}/dashboard/")
            page.wait_for_selector("#live-status[data-state=live]")
            visitor = context.new_page()
            visitor.goto(f"{daphne.url}/chat/{bot.public_id}/")
            # The socket is ready: before that the composer keeps what Enter would send (a busy CI machine saw it).
            expect(visitor.locator("#handoff-button")).to_be_enabled(timeout=30_000)
            visitor.fill("#composer-input", "Is the tent waterproof? Asked live.")
            visitor.press("#composer-input", "Enter")
            page.locator("#conversation-list tbody tr", has_text="Asked live").wait_for()
            found = [v for frame in visitor.frames for v in frame.evaluate("window.__cspViolations || []")]
            if found:
                violations["chat page"] = found

            admin = browser.new_context()
            admin.add_cookies([{"name": "sessionid", "value": admin_session.cookies["sessionid"].value,
                                "url": daphne.url}])  # fmt: skip
            admin.add_init_script(RECORD_VIOLATIONS)
            admin_page = admin.new_page()
            for path in ["/admin/", "/admin/chatbot/bot/", f"/admin/chatbot/bot/{bot.id}/change/"]:
                admin_page.goto(f"{daphne.url}{path}")
                admin_page.wait_for_load_state("networkidle")
                if found := admin_page.evaluate("window.__cspViolations"):
                    violations[path] = found
            browser.close()
    finally:
        daphne.stop()
    assert violations == {}
    assert len(live) >= 10, live
    assert [text for text in console_errors if "Content Security Policy" in text] == []
