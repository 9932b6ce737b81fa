"""The chat widget in real Chromium against the fake server (fake_server.py).

Run: .venv/bin/python -m pytest tests/widget_harness
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from devtools.browser import chromium, eventually

from .fake_server import FakeParley

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1200, "height": 800}
PHONE = {"width": 375, "height": 667}


@pytest.fixture(scope="session")
def server() -> FakeParley:
    return FakeParley().start_in_thread()


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop in the main thread while open, which would stop
    # every later browser module from starting its own.
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(5000)
    page.console_errors = []
    page.dialogs = []

    def on_console(message):
        if message.type == "error" and "favicon" not in (message.location or {}).get("url", ""):
            page.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def open_chat(page: Page, server: FakeParley, query: str = "") -> None:
    page.goto(f"{server.origin}/chat/demo/{query}")
    expect(page.locator(".msg-bot").first).to_contain_text("Hi! I answer questions")
    expect(page.locator("#handoff-button")).to_be_enabled()  # the socket is ready


def send(page: Page, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def last_answer(page: Page):
    return page.locator(".msg-bot[data-id]").last


def wait_done(page: Page) -> None:
    expect(last_answer(page).locator(".feedback, .msg-note")).not_to_have_count(0)


# --- Markdown safety -------------------------------------------------------------------------

XSS_PAYLOADS = [
    "<img src=x onerror=\"window.__pwned='img'\">",
    "<script>window.__pwned='script'</script>",
    "[x](javascript:window.__pwned='link')",
    "[x](JAVASCRIPT:alert(1)) [y]( javascript:alert(1) ) [z](java\tscript:alert(1)) [w](&#106;avascript:alert(1))",
    "[d](data:text/html,<script>alert(1)</script>) [v](vbscript:msgbox) [rel](/relative) [proto](//evil.example)",
    "<javascript:alert(1)> <data:text/html,x>",
    "```html\n<img src=x onerror=\"window.__pwned='code'\"><script>window.__pwned='code'</script>\n```",
    "`<b onmouseover=alert(1)>x</b>` **<svg onload=\"window.__pwned='svg'\">** *<iframe src=javascript:alert(1)>*",
    "[**bold [inner](javascript:alert(1))**](https://ok.example/)",
    "[1] [2, 3]",
]


def test_it_renders_hostile_markdown_as_inert_text(page, server):
    # No CSP on this page: if the renderer were unsafe the payloads would really run.
    open_chat(page, server, "?nocsp=1")
    result = page.evaluate(
        """async (payloads) => {
            const { renderMarkdown } = await import('/static/parley/chat/markdown.js');
            const host = document.createElement('div');
            document.body.append(host);
            const citations = new Map([[2, {title: 'evil', url: 'javascript:alert(2)'}],
                                       [3, {title: 'good', url: 'https://docs.example.com/3'}]]);
            for (const src of payloads) {
                const div = document.createElement('div');
                renderMarkdown(div, src, {citations});
                host.append(div);
            }
            await new Promise(r => setTimeout(r, 300));  // let any image error handler fire
            return {
                tags: [...new Set([...host.querySelectorAll('*')].map(e => e.localName))].sort(),
                attrs: [...new Set([...host.querySelectorAll('*')].flatMap(e => e.getAttributeNames()))].sort(),
                hrefs: [...host.querySelectorAll('a')].map(a => a.getAttribute('href')),
                text: host.textContent,
                pwned: window.__pwned ?? null,
            };
        }""",
        XSS_PAYLOADS,
    )
    assert result["pwned"] is None
    assert set(result["tags"]) <= {"div", "p", "a", "strong", "em", "code", "pre", "span", "br"}
    assert set(result["attrs"]) <= {"href", "target", "rel", "class", "title", "aria-label", "data-lang"}
    assert result["hrefs"] == ["https://ok.example/", "https://docs.example.com/3"]
    assert "<img src=x onerror=" in result["text"]
    assert "<script>window.__pwned='code'</script>" in result["text"]


def test_a_markdown_table_renders_as_a_table_with_inert_cells(page, server):
    open_chat(page, server, "?nocsp=1")
    result = page.evaluate(
        """async (src) => {
            const { renderMarkdown } = await import('/static/parley/chat/markdown.js');
            const div = document.createElement('div');
            document.body.append(div);
            renderMarkdown(div, src, {citations: new Map()});
            await new Promise(r => setTimeout(r, 300));
            return {
                head: [...div.querySelectorAll('thead th')].map(c => c.textContent),
                rows: [...div.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.innerHTML)),
                after: div.querySelector('table + p, .table-wrap + p')?.textContent ?? null,
                tags: [...new Set([...div.querySelectorAll('*')].map(e => e.localName))].sort(),
                pwned: window.__pwned ?? null,
            };
        }""",
        "| Variable | Default |\n|---|:---:|\n| `TGI_URL` | **unset** |\n"
        "| <img src=x onerror=window.__pwned=1> | a \\| b |\n\n[1]",
    )
    assert result["head"] == ["Variable", "Default"]
    assert result["rows"][0] == ["<code>TGI_URL</code>", "<strong>unset</strong>"]
    assert result["rows"][1][0] == "&lt;img src=x onerror=window.__pwned=1&gt;"
    assert result["rows"][1][1] == "a | b", "an escaped pipe stays in its cell"
    assert result["pwned"] is None
    assert set(result["tags"]) <= {"div", "table", "thead", "tbody", "tr", "th", "td", "p", "code", "strong", "span"}


def test_a_hostile_streamed_answer_stays_inert_in_the_conversation(page, server):
    open_chat(page, server, "?nocsp=1")
    send(page, "xss please")
    wait_done(page)
    answer = last_answer(page)
    bubble = answer.locator(".bubble")
    expect(bubble).to_contain_text("<img src=x onerror=")
    expect(bubble.locator("pre code")).to_contain_text("<img src=x onerror=\"window.top.__pwned='code'\">")
    assert bubble.locator("img, script, svg, iframe, [onerror], [onload], [onmouseover]").count() == 0
    hrefs = bubble.locator("a").evaluate_all("els => els.map(a => a.href)")
    assert all(h.startswith(("http:", "https:", "mailto:")) for h in hrefs)
    bubble.get_by_text("click me").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned ?? null") is None
    assert page.dialogs == []


def test_markdown_rendering_reuses_unchanged_blocks_and_keeps_up_with_streaming(page, server):
    open_chat(page, server)
    result = page.evaluate(
        """async () => {
            const { renderMarkdown } = await import('/static/parley/chat/markdown.js');
            const div = document.createElement('div');
            renderMarkdown(div, 'First **paragraph**.\\n\\n- one\\n- tw');
            const first = div.firstChild;
            renderMarkdown(div, 'First **paragraph**.\\n\\n- one\\n- two\\n  - nested\\n\\n3. three\\n4. four');
            const reused = div.firstChild === first;
            const html = div.innerHTML;
            // A long answer arriving in 1,000 small token batches, fully re-rendered each time.
            const words = Array.from({length: 3000}, (_, i) => i % 40 === 0 ? '\\n\\n- **item** `code` ' : 'word ');
            const target = document.createElement('div');
            let text = '';
            const t0 = performance.now();
            for (let i = 0; i < words.length; i += 3) {
                text += words.slice(i, i + 3).join('');
                renderMarkdown(target, text);
            }
            return {reused, html, ms: performance.now() - t0};
        }"""
    )
    assert result["reused"]
    assert "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>" in result["html"]
    assert '<ol start="3"><li>three</li><li>four</li></ol>' in result["html"]
    assert result["ms"] < 2000, result["ms"]


# --- Conversation ----------------------------------------------------------------------------


@pytest.fixture
def slow_tokens(server):
    server.token_delay = 0.15
    yield
    server.token_delay = 0.04


def test_it_streams_an_answer_then_shows_citations_under_a_strict_csp(page, server, slow_tokens):
    open_chat(page, server)
    send(page, "shipping times")
    expect(page.locator(".msg-typing")).to_be_visible()  # between sending and the first token
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#send-button")).to_be_hidden()
    streaming = page.locator(".bubble.is-streaming")
    expect(streaming).to_be_visible()
    expect(page.locator(".msg-typing")).to_have_count(0)
    # Tokens are hidden from screen readers until the answer is done, then announced once.
    assert last_answer(page).locator(".msg-body").get_attribute("aria-hidden") == "true"
    expect(streaming.locator("strong")).to_have_text("shipping times")  # Markdown while streaming

    wait_done(page)
    answer = last_answer(page)
    assert answer.locator(".msg-body").get_attribute("aria-hidden") is None
    expect(answer.locator(".bubble ol li")).to_have_count(2)
    expect(answer.locator(".bubble pre code")).to_have_text("print('<b>not bold</b>')")
    cite = answer.locator(".bubble a.cite").first
    expect(cite).to_have_attribute("href", "https://docs.example.com/shipping")
    expect(cite).to_have_attribute("aria-label", "Source 1: Shipping policy")
    sources = answer.locator(".citations li a")
    expect(sources).to_have_text(["Shipping policy", "Returns"])
    for i in range(2):
        expect(sources.nth(i)).to_have_attribute("target", "_blank")
        expect(sources.nth(i)).to_have_attribute("rel", "noopener noreferrer")
    expect(page.locator("#send-button")).to_be_visible()
    assert page.locator("#messages").get_attribute("aria-live") == "polite"
    assert page.console_errors == []  # nothing blocked by script-src 'self' / style-src 'self'


def test_stop_sends_stop_and_marks_the_answer_stopped(page, server):
    open_chat(page, server)
    send(page, "slow answer please")
    expect(page.locator(".bubble.is-streaming")).to_be_visible()
    page.click("#stop-button")
    expect(last_answer(page).locator(".msg-note")).to_have_text("Answer stopped.")
    assert server.frames("stop")
    expect(page.locator("#stop-button")).to_be_hidden()
    page.fill("#composer-input", "next question")
    expect(page.locator("#send-button")).to_be_enabled()


def test_feedback_sends_the_vote_and_shows_the_chosen_state(page, server):
    open_chat(page, server)
    send(page, "returns")
    wait_done(page)
    answer = last_answer(page)
    message_id = int(answer.get_attribute("data-id"))
    votes = len(server.frames("feedback"))
    answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "false")
    expect(answer.locator(".feedback-thanks")).to_have_text("Thanks for your feedback!")
    # The widget shows the vote at once; the frame reaches the server's thread a moment later.
    eventually(lambda: len(server.frames("feedback")) > votes, what="the vote to reach the server")
    assert server.frames("feedback")[-1] == {"type": "feedback", "message_id": message_id, "value": "up"}


def test_it_reconnects_with_the_stored_token_and_resumes_the_conversation(page, server):
    open_chat(page, server)
    token = server.frames("hello")[-1]["visitor_token"]
    hellos = len(server.frames("hello"))
    send(page, "drop the line")
    expect(page.locator("#connection-status")).to_have_text("Reconnecting…")
    expect(page.locator("#connection-status")).to_be_hidden()
    resumed = server.frames("hello")[hellos:]
    assert resumed and resumed[-1]["visitor_token"] is not None
    # The ready frame replaced the list: the answer finished server-side while we were away.
    answer = last_answer(page)
    expect(answer.locator(".citations li")).to_have_count(2)
    expect(page.locator(".msg-visitor")).to_have_text(["You: drop the line"])

    page.reload()
    expect(page.locator(".msg-visitor")).to_have_text(["You: drop the line"])
    assert server.frames("hello")[-1]["visitor_token"] == resumed[-1]["visitor_token"]
    assert token is None or token == resumed[-1]["visitor_token"]


def test_new_conversation_clears_the_transcript_once_the_server_started_it(page, server):
    open_chat(page, server)
    send(page, "returns")
    wait_done(page)
    conversations = len(server.frames("new_conversation"))

    page.get_by_role("button", name="New conversation").click()

    expect(page.locator(".msg-visitor")).to_have_count(0)
    expect(page.locator(".msg-bot")).to_have_count(1)
    expect(page.locator(".msg-bot")).to_contain_text("Hi! I answer questions")
    expect(page.locator("#composer-input")).to_be_focused()
    assert server.frames("new_conversation")[conversations:] == [{"type": "new_conversation"}]
    send(page, "shipping")
    wait_done(page)
    expect(page.locator(".msg-visitor")).to_have_text(["You: shipping"])
    page.reload()
    expect(page.locator(".msg-visitor")).to_have_text(["You: shipping"])
    assert page.console_errors == []


def test_a_new_conversation_the_server_refuses_leaves_the_transcript_as_it_was(page, server):
    open_chat(page, server)
    send(page, "I'd rather stay")
    wait_done(page)

    page.get_by_role("button", name="New conversation").click()

    error = page.locator(".msg-error")
    expect(error).to_contain_text("Not so fast.")
    expect(error.get_by_role("button", name="Retry")).to_have_count(0)  # a Retry would resend the old question
    expect(page.locator(".msg-visitor")).to_have_text(["You: I'd rather stay"])
    expect(page.get_by_role("button", name="New conversation")).to_be_enabled()
    send(page, "returns")
    expect(page.locator(".msg-visitor")).to_have_count(2)


def test_it_reconnects_when_the_server_drops_an_idle_socket(page, server):
    open_chat(page, server)
    hellos = len(server.frames("hello"))
    server.call(server.kill_all)
    expect(page.locator("#connection-status")).to_have_text("Reconnecting…")
    expect(page.locator("#send-button")).to_be_disabled()
    expect(page.locator("#connection-status")).to_be_hidden(timeout=8000)
    assert len(server.frames("hello")) == hellos + 1


def test_an_error_frame_shows_inline_with_a_retry_that_resends_the_question(page, server):
    open_chat(page, server)
    send(page, "please fail")
    error = page.locator(".msg-error")
    expect(error).to_contain_text("The assistant is unavailable right now.")
    sent = len(server.frames("message"))
    error.get_by_role("button", name="Retry").click()
    expect(page.locator(".msg-error")).to_have_count(2)
    assert len(server.frames("message")) == sent + 1
    assert server.frames("message")[-1]["text"] == "please fail"


def test_the_composer_sends_on_enter_and_guards_the_length_limit(page, server):
    open_chat(page, server)
    box = page.locator("#composer-input")
    box.click()
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert box.input_value() == "line one\nline two"
    expect(page.locator("#char-counter")).to_be_hidden()

    box.fill("é" * 3990)
    expect(page.locator("#char-counter")).to_have_text("3,990 of 4,000 characters")
    box.fill("😀" * 4001)  # 4,001 code points (8,002 UTF-16 units)
    expect(page.locator("#char-counter")).to_contain_text("too long")
    expect(page.locator("#send-button")).to_be_disabled()
    sent = len(server.frames("message"))
    box.press("Enter")
    page.wait_for_timeout(200)
    assert len(server.frames("message")) == sent

    box.fill("line one\nline two")
    box.press("Enter")
    expect(page.locator(".msg-visitor .bubble")).to_have_text(["line one\nline two"])
    # The bubble is drawn before the frame is sent: wait for the server to have it.
    eventually(lambda: len(server.frames("message")) > sent, what="the message to reach the server")
    frame = server.frames("message")[-1]
    assert frame["text"] == "line one\nline two" and re.fullmatch(r"[0-9a-f]{24}", frame["client_id"])
    expect(box).to_have_value("")


def test_talk_to_a_person_requests_a_handoff_and_shows_the_staff_reply(page, server):
    open_chat(page, server)
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.locator(".msg-staff .msg-author")).to_have_text("Sam")
    expect(page.locator(".msg-staff em")).to_have_text("How can I help?")
    expect(page.locator(".msg-system")).to_have_text(["A person will join shortly.", "Sam joined the conversation"])
    assert server.frames("handoff_request")


def test_every_control_has_an_accessible_name_and_the_page_is_translated(page, server):
    open_chat(page, server, "?lang=fr")
    send(page, "bonjour")
    wait_done(page)
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, textarea, a')]
            .filter(el => !(el.getAttribute('aria-label') || el.textContent.trim()))
            .map(el => el.outerHTML)"""
    )
    assert unnamed == []
    assert page.locator("html").get_attribute("lang") == "fr"
    expect(page.locator("#composer-input")).to_have_attribute("placeholder", "Écrivez votre message…")
    expect(page.get_by_role("button", name="Parler à une personne")).to_be_visible()
    expect(page.get_by_role("button", name="Nouvelle conversation")).to_be_enabled()
    page.keyboard.press("Tab")  # keyboard focus is visible
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


# --- The loader on a customer's page -----------------------------------------------------------


def launcher(page: Page):
    return page.locator("parley-widget button.l")


def panel_box(page: Page):
    return page.locator("parley-widget .p").bounding_box()


def chat_frame(page: Page):
    return page.frame_locator("parley-widget iframe")


def is_open(page: Page) -> bool:
    return page.evaluate("document.querySelector('parley-widget').shadowRoot.firstChild.classList.contains('o')")


def test_the_loader_points_the_iframe_at_parley_with_the_page_context(page, server):
    page.goto(f"{server.host_origin}/host.html?html_lang=fr-CA")
    expect(launcher(page)).to_have_attribute("aria-label", "Ouvrir la discussion")
    src = page.locator("parley-widget iframe").get_attribute("src")
    url = urlsplit(src)
    assert f"{url.scheme}://{url.netloc}" == server.origin  # computed from the script's own src
    assert url.path == "/chat/demo/"
    query = parse_qs(url.query)
    assert query["embed"] == ["1"] and query["lang"] == ["fr"]
    assert query["page"] == [f"{server.host_origin}/host.html?html_lang=fr-CA"]
    # The bot colour arrives from the iframe via parley:ready.
    expect(launcher(page)).to_have_css("background-color", "rgb(79, 70, 229)")
    assert page.evaluate("Object.keys(window).filter(k => k.toLowerCase().includes('parley'))") == ["Parley"]

    launcher(page).click()
    expect(launcher(page)).to_have_attribute("aria-expanded", "true")
    expect(chat_frame(page).locator("#composer-input")).to_be_focused()
    expect(chat_frame(page).locator("#composer-input")).to_have_attribute("placeholder", "Écrivez votre message…")


def test_the_loader_accepts_messages_only_from_its_own_iframe(page, server):
    # A page on Parley's origin in another frame announces itself and later asks to close the panel.
    page.goto(f"{server.host_origin}/host.html?rogue=1")
    expect(launcher(page)).to_have_css("background-color", "rgb(79, 70, 229)")
    page.wait_for_timeout(300)
    expect(launcher(page)).to_have_css("background-color", "rgb(79, 70, 229)")  # not the rogue's red
    expect(page.locator("parley-widget .b")).to_be_hidden()  # nor its 42 unread
    page.evaluate("Parley.open()")
    assert is_open(page)
    page.frame(url=re.compile(r"/rogue\.html$")).evaluate("window.postMessage('fire', '*')")
    page.evaluate("window.postMessage({type: 'parley:close'}, '*')")  # the host page's own origin
    page.wait_for_timeout(300)
    assert is_open(page)
    chat_frame(page).get_by_role("button", name="Chat schließen").click()  # the real iframe (lang="de"): obeyed
    expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    expect(launcher(page)).to_be_focused()


def test_the_chat_iframe_accepts_messages_only_from_its_parent_origin(page, server):
    host = f"{server.host_origin}/host.html?case=parent-origin"
    page.goto(host)
    expect(launcher(page)).to_have_css("background-color", "rgb(79, 70, 229)")

    # Only this page's: the chat an earlier test opened (and did not wait for) may say hello a moment later.
    def page_hellos() -> list[dict]:
        return [hello for hello in server.frames("hello") if hello.get("page_url") == host]

    hellos = len(page_hellos())
    frame = page.frame(url=re.compile(r"/chat/demo/"))
    # Embedded, the chat connects only when opened: a forged "open" would make it connect.
    frame.evaluate("window.postMessage({type: 'parley:open'}, '*')")
    page.wait_for_timeout(500)
    assert len(page_hellos()) == hellos
    page.evaluate("Parley.open()")
    expect(chat_frame(page).locator("#handoff-button")).to_be_enabled()
    assert len(page_hellos()) == hellos + 1


def test_escape_and_the_api_open_and_close_the_panel(page, server):
    page.goto(f"{server.host_origin}/host.html")
    expect(launcher(page)).to_have_css("background-color", "rgb(79, 70, 229)")
    page.evaluate("Parley.toggle()")
    assert is_open(page)
    expect(chat_frame(page).locator("#composer-input")).to_be_focused()
    page.keyboard.press("Escape")  # inside the iframe
    expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    page.evaluate("Parley.open()")
    page.locator("#host-button").focus()
    page.keyboard.press("Escape")  # on the host page
    assert not is_open(page)


def test_it_floats_a_panel_on_desktop_and_goes_full_screen_on_phones(browser, server):
    desktop = browser.new_page(viewport=DESKTOP)
    desktop.goto(f"{server.host_origin}/host.html?position=left")
    expect(launcher(desktop)).to_have_css("background-color", "rgb(79, 70, 229)")
    launcher(desktop).click()
    expect(desktop.locator("parley-widget .p")).to_be_visible()
    box = panel_box(desktop)
    assert (round(box["width"]), round(box["height"]), box["x"]) == (380, 600, 20)
    assert launcher(desktop).evaluate("el => getComputedStyle(el).left") == "20px"
    desktop.close()

    phone = browser.new_page(viewport=PHONE)
    phone.goto(f"{server.host_origin}/host.html?open=1")
    expect(phone.locator("parley-widget .p")).to_be_visible()
    box = panel_box(phone)
    assert box == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
    expect(launcher(phone)).to_be_hidden()  # the iframe's header has the close button
    assert phone.evaluate("document.activeElement === document.body")  # data-open does not steal focus
    phone.close()


def test_host_page_css_cannot_hide_or_squash_the_widget(page, server):
    page.goto(f"{server.host_origin}/host.html?hostile=1")
    expect(launcher(page)).to_be_visible()
    box = launcher(page).bounding_box()
    assert (box["width"], box["height"]) == (56, 56)
    launcher(page).click()
    expect(chat_frame(page).locator("#composer-input")).to_be_visible()
    box = page.locator("parley-widget iframe").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (380, 600)


def test_the_fake_server_renders_config_the_page_reads(server):
    from .fake_server import render_chat_page

    html = render_chat_page("demo", {"embed": ["1"], "lang": ["de"]})
    config = json.loads(re.search(r'<script id="parley-config" type="application/json">(.*?)</script>', html).group(1))
    assert set(config) == {"bot", "wsPath", "lang", "embed", "parentOrigin"}
    assert set(config["bot"]) == {"name", "publicId", "greeting", "color"}
    assert '<html lang="de">' in html and "<script>" not in html
