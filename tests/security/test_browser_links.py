"""Links a poisoned document can make the model write, disguised so a filter reads them differently from the browser
(C0 controls, tabs and newlines inside the scheme, escaped brackets, code spans and paragraphs that pair brackets
differently, JavaScript-only spaces, backslashes, mixed case, protocol-relative and entity-like forms), rendered in
real Chromium by the widget's markdown.js. Two layers, each tested alone: the output guard's text, rendered with no
host list, links nowhere else; markdown.js, given the bot's hosts, links nowhere else even from unguarded text. And
the chat page itself hands markdown.js its bot's hosts. Without Debian's Chromium these skip (fail with
PARLEY_REQUIRE_BROWSER=1)."""

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from chatbot.answers.guard import allowed_hosts_from, guard_answer
from chatbot.bots.services import bot_create
from devtools.browser import chromium
from devtools.pytest_plugin import start_daphne
from devtools.stack import BASE_DIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALLOWED = allowed_hosts_from(["https://www.acme.test", "https://docs.acme.test/help"])
OK = "https://docs.acme.test/ok"
DISGUISES = {
    "c0_and_tab": "[pricing](\u0001ht\ttps://evil.example/steal)",
    "escaped_bracket": "[see\\](#)](ht\ttps://evil.example/p)",
    "inner_lf": "[a](ht\ntps://evil.example/x)",
    "inner_cr": "[a](ht\rtps://evil.example/x)",
    "leading_spaces_and_controls": "[a](   \u0000\u001f https://evil.example/x)",
    "nbsp_trimmed_by_javascript": "[a](\u00a0\u2003https://evil.example/x)",
    "title": '[a](\u0001https://evil.example/x "Our pricing")',
    "angle_brackets": "[a](<\u0001ht\ttps://evil.example/x>)",
    "backslashes": "[a](https:\\\\evil.example\\x) and https:\\\\evil.example\\y",
    "tab_after_colon": "[a](https:\t//evil.example/x)",
    "mixed_case": "[a](HtTpS://EVIL.example/x) <HTTPS://Evil.Example/y> hTTps://evil.EXAMPLE/z",
    "protocol_relative": "[a](//evil.example/x) <//evil.example/y> [b](\u0001//evil.example/z)",
    "entity_like": "[a](&#104;ttps://evil.example/x) [b](https&colon;//evil.example/y) [c](&#x68;ttps://evil.example)",
    "userinfo_after_a_javascript_only_space": "https://www.acme.test\u001c@evil.example/ [a](https://docs.acme.test\u001c@evil.example/)",
    "code_span_pairs_the_bracket": f"[x `[` [b](\u0001https://evil.example/x) ]({OK})",
    "paragraphs_pair_the_bracket": f"[a\n\n[b](\u0001https://evil.example/x)\n\n]({OK})",
    "emphasis_pairs_the_bracket": f"*[a* ](\u0001ht\ttps://evil.example/x) x]({OK})",
    "nested": f"[[a]({OK})](\u0001https://evil.example/x)",
    "automail": "Write to <phish@evil.example> or <mailto:phish@Evil.Example>",
    "mailto_disguised": "[us](\u0001MAILTO:phish@evil.example)",
}
ALLOWED_LINKS = f"[ok]({OK}), <https://www.acme.test/b>, https://acme.test/c, <help@acme.test>"


@pytest.fixture(scope="module")
def static_site():
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(BASE_DIR / "static"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _rendered_link_hosts(base: str, texts: list[str], *, link_hosts: list[str] | None) -> list[list[str]]:
    """The host of every live link markdown.js makes of each text (mailto: links by their address's domain)."""
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{base}/parley/chat/markdown.js")
        page.set_content("<div id=out></div>")
        hosts = page.evaluate(
            """async ([base, texts, linkHosts]) => {
                const markdown = await import(base + "/parley/chat/markdown.js");
                if (linkHosts) markdown.setLinkHosts(linkHosts);
                return texts.map((text) => {
                    const box = document.createElement("div");
                    document.body.appendChild(box);
                    markdown.renderMarkdown(box, text);
                    return [...box.querySelectorAll("a[href]")].map((a) => {
                        const url = new URL(a.href);
                        return url.protocol === "mailto:" ? url.pathname.split("@").pop().toLowerCase() : url.hostname;
                    });
                });
            }""",
            [base, texts, link_hosts],
        )
        browser.close()
    return hosts


def _off_site(hosts: list[str]) -> list[str]:
    return [host for host in hosts if not (host == "acme.test" or host.endswith(".acme.test"))]


def test_the_guards_text_links_only_to_the_bots_sites_whatever_the_disguise(static_site):
    guarded = [guard_answer(text, allowed_hosts=ALLOWED).text for text in DISGUISES.values()]
    # No second layer here: markdown.js renders the guarded text with no host list, as an older page would.
    rendered = _rendered_link_hosts(static_site, [*guarded, ALLOWED_LINKS], link_hosts=None)
    bad = {name: hosts for name, hosts in zip(DISGUISES, rendered, strict=False) if _off_site(hosts)}
    assert bad == {}, json.dumps(bad)
    assert sorted(rendered[-1]) == ["acme.test", "acme.test", "docs.acme.test", "www.acme.test"]


def test_unguarded_disguises_are_real_links_in_a_browser(static_site):
    # What makes the disguises dangerous: markdown.js alone, with no host list, does link most of them off-site.
    rendered = _rendered_link_hosts(static_site, list(DISGUISES.values()), link_hosts=None)
    live = [name for name, hosts in zip(DISGUISES, rendered, strict=True) if _off_site(hosts)]
    assert {"c0_and_tab", "escaped_bracket", "backslashes", "mixed_case", "automail"} <= set(live), live


def test_markdown_js_given_the_bots_hosts_links_nowhere_else_even_from_unguarded_text(static_site):
    rendered = _rendered_link_hosts(
        static_site, [*DISGUISES.values(), ALLOWED_LINKS], link_hosts=["acme.test", "www.acme.test"]
    )
    bad = {name: hosts for name, hosts in zip(DISGUISES, rendered, strict=False) if _off_site(hosts)}
    assert bad == {}, json.dumps(bad)
    assert sorted(rendered[-1]) == ["acme.test", "acme.test", "docs.acme.test", "www.acme.test"]


@pytest.mark.django_db(transaction=True)
def test_the_chat_page_gives_markdown_js_its_bots_hosts(tmp_path):
    # The greeting is rendered by markdown.js like an answer: on the real page, only the bot's sites are links.
    bot = bot_create(
        slug="acme",
        name="Acme Support",
        allowed_origins=["https://www.acme.test"],
        greeting="Hi! See [our offer](https://evil.example/x) or [help](https://www.acme.test/help).",
    )
    config = Client().get(f"/chat/{bot.public_id}/", HTTP_HOST="localhost").content.decode()
    assert '"linkHosts": ["acme.test", "localhost"]' in config
    daphne = start_daphne(log_path=tmp_path / "daphne.log")
    try:
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"{daphne.url}/chat/{bot.public_id}/")
            greeting = page.locator(".msg-bot .bubble").first
            greeting.get_by_text("help").wait_for(timeout=30_000)
            hrefs = greeting.locator("a[href]").evaluate_all("(links) => links.map((a) => a.href)")
            assert "our offer" in greeting.inner_text()
            browser.close()
    finally:
        daphne.stop()
    assert hrefs == ["https://www.acme.test/help"]
