"""Hostile text rendered in real Chromium: the staff dashboard's transcript (model output, document excerpts and
citation titles a visitor's question pulled in), and the widget's markdown.js on every guarded injection payload.
No script runs, no markup comes alive, and no link leads off the bot's sites. Without Debian's Chromium these skip
(fail with PARLEY_REQUIRE_BROWSER=1), like tests/browser."""

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from chatbot.answers.guard import allowed_hosts_from, guard_answer
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Message
from devtools.browser import chromium
from devtools.pytest_plugin import start_daphne
from devtools.stack import BASE_DIR
from tests.security.attacks import ATTACKS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = (
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script>\n'
    '[click](javascript:window.__pwned=1) <a href="javascript:window.__pwned=1">a</a> '
    '<svg onload="window.__pwned=1"></svg> <iframe src="javascript:window.__pwned=1"></iframe>'
)
ALLOWED = allowed_hosts_from(["https://www.acme.test"])


def _inert(page) -> None:
    page.wait_for_timeout(300)  # time for an error handler or onload to run
    assert page.evaluate("typeof window.__pwned") == "undefined"


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_transcript_shows_hostile_model_and_document_text_inertly(tmp_path):
    bot = bot_create(slug="acme", name="Acme", allowed_origins=["https://www.acme.test"])
    admin = staff_member_save(username="ada", role="admin", display_name="Ada", password="correct-horse-battery").user
    conversation = conversation_resume_or_start(bot=bot, visitor_id="attacker")
    Message.objects.create(conversation=conversation, role="visitor", text=HOSTILE)
    Message.objects.create(
        conversation=conversation, role="bot", status="complete", text=HOSTILE,
        citations=[{"n": 1, "title": HOSTILE, "url": "javascript:window.__pwned=1"}],
        retrieved=[{"chunk_id": 1, "title": HOSTILE, "url": "javascript:window.__pwned=1", "heading_path": [HOSTILE],
                    "score": 1.0, "similarity": 0.9, "vector_rank": 1, "text_rank": 1, "text": HOSTILE}],
        prompt=[{"role": "system", "content": HOSTILE}],
    )  # fmt: skip
    session = Client()
    session.force_login(admin)
    cookie = session.cookies["sessionid"].value
    daphne = start_daphne(log_path=tmp_path / "daphne.log")
    try:
        with chromium() as browser:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": daphne.url}])
            page = context.new_page()
            page.goto(f"{daphne.url}/dashboard/conversations/{conversation.id}/")
            for details in page.locator("details").all():
                details.evaluate("(element) => { element.open = true; }")
            transcript = page.locator("main")
            assert "window.__pwned=1" in transcript.inner_text()  # shown as text
            assert transcript.locator("script:not([src]), img[src=x], svg, iframe, [onerror], [onload]").count() == 0
            for link in transcript.get_by_text("click").all():
                link.click()
            _inert(page)
            browser.close()
    finally:
        daphne.stop()


@pytest.mark.django_db(transaction=True)
def test_the_dashboard_transcript_never_links_a_javascript_url(client):
    bot = bot_create(slug="acme", name="Acme", allowed_origins=["https://www.acme.test"])
    admin = staff_member_save(username="ada", role="admin", display_name="Ada", password="correct-horse-battery").user
    conversation = conversation_resume_or_start(bot=bot, visitor_id="attacker")
    Message.objects.create(conversation=conversation, role="bot", status="complete", text="See [1].",
                           citations=[{"n": 1, "title": "Refunds", "url": "javascript:window.__pwned=1"}])  # fmt: skip
    client.force_login(admin)
    page = client.get(f"/dashboard/conversations/{conversation.id}/").content.decode()
    assert 'href="javascript:' not in page.replace("&#x27;", "'")


def test_markdown_js_renders_every_guarded_injection_payload_inertly_with_links_only_to_allowed_sites():
    rules = "Answer only from the numbered passages in the DATA block below"
    texts = [guard_answer(a.payload.replace("{system}", rules).replace("{system_lines}", rules),
                          allowed_hosts=ALLOWED).text for a in ATTACKS]  # fmt: skip
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(BASE_DIR / "static"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"{base}/parley/chat/markdown.js")
            page.set_content("<div id=out></div>")
            result = page.evaluate(
                """async ([base, texts]) => {
                    const { renderMarkdown } = await import(base + "/parley/chat/markdown.js");
                    const out = [];
                    for (const text of texts) {
                        const box = document.createElement("div");
                        document.body.appendChild(box);
                        renderMarkdown(box, text);
                        for (const a of box.querySelectorAll("a")) a.click = undefined;
                        out.push({
                            hosts: [...box.querySelectorAll("a[href]")].map((a) => new URL(a.href).hostname),
                            live: box.querySelectorAll("script, img, svg, iframe, [onerror], [onload]").length,
                        });
                    }
                    return out;
                }""",
                [base, texts],
            )
            _inert(page)
            browser.close()
    finally:
        server.shutdown()
    bad = {a.name: r for a, r in zip(ATTACKS, result, strict=True) if r["live"] or
           any(not (h == "acme.test" or h.endswith(".acme.test")) for h in r["hosts"])}  # fmt: skip
    assert bad == {}, json.dumps(bad)
