"""Hostile and bad input, in one place: one test per promise, each failing when the promise breaks.

Sections: the chat websocket · what the model writes (links, prompt leaks) · documents and crawling · prompt
injection (input layer: the prompt; output layer: what reaches the visitor) · access to the dashboard.
docs/security.md lists the promises with these tests. Browser-level rendering is in test_browser_output.py.
"""

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import time
import zlib
from difflib import SequenceMatcher
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from chatbot.answers.guard import SAFE_MESSAGE, allowed_hosts_from, guard_answer, protected_text
from chatbot.answers.pipeline import answer_generate
from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.chat.visitors import TOKEN_MAX_AGE_S, visitor_token_issue
from chatbot.chat.widget import chat_page_csp
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Conversation, Lead, Message
from chatbot.realtime.connections import async_client
from chatbot.realtime.keys import connections_key
from chatbot.realtime.protocol import MAX_FRAME_BYTES
from chatbot.settings import BASE_DIR
from devtools.tgi_simulator import TGISimulator
from inference.budget import build_prompt
from inference.client import ModelInfo, estimate_tokens, forget_endpoint
from inference.prompts import Passage, render_system_prompt
from knowledge.parsing import DocumentParseError, ParseLimits, parse_document
from knowledge.services import source_add_faq
from knowledge.web import FetchError, FetchLimits, fetch_page, read_sitemap
from tests.chatbot import GroupListener, page_add, stop_requests_forget
from tests.knowledge.documents import make_pdf_with_stream, zip_bomb_docx
from tests.knowledge.test_web import LOCAL, html, site, sitemap_index, urlset  # noqa: F401 - `site` is a fixture
from tests.rate_windows import clear_of_window_end
from tests.security.attacks import ATTACKS, EVIL

from .conftest import logged_in

ORIGIN = "https://www.acme.test"
_addresses = itertools.count(1)


@pytest.fixture
def acme(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=[ORIGIN])


def _socket(bot, *, origin: str | None = ORIGIN, ip: str | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"parley.test")] + ([(b"origin", origin.encode())] if origin is not None else [])
    communicator = WebsocketCommunicator(application, f"/ws/chat/{bot.public_id}/", headers=headers)
    communicator.scope["client"] = (ip or f"10.66.{next(_addresses) % 250}.{next(_addresses) % 250}", 40000)
    return communicator


async def _ready(bot, *, token=None, extra: dict | None = None, **kwargs) -> tuple[WebsocketCommunicator, dict]:
    communicator = _socket(bot, **kwargs)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "hello", "protocol": 1, "visitor_token": token, **(extra or {})})
    ready = await communicator.receive_json_from(timeout=5)
    assert ready["type"] == "ready", ready
    return communicator, ready


async def _alive(communicator) -> None:
    await communicator.send_json_to({"type": "ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "pong"


async def _refused(communicator, *, timeout_s: float = 5) -> tuple[str, int]:
    connected, _ = await communicator.connect(timeout=timeout_s)
    assert connected  # accepted only to say why, then closed
    error = await communicator.receive_json_from(timeout=timeout_s)
    closed = await communicator.receive_output(timeout=timeout_s)
    assert closed["type"] == "websocket.close"
    # As a browser would: answer the close, so the consumer's instance ends (not left to the loop's teardown).
    await communicator.disconnect()
    return error["code"], closed["code"]


# === the chat websocket =========================================================================================

ws = pytest.mark.django_db(transaction=True)


@ws
@pytest.mark.parametrize(
    "frame",
    ["{not json", "[]", "42", '"hello"', '{"type": 7}', '{"type": "x' + "y" * 100 + '"}', '{"type": "message"}',
     '{"type": "message", "text": {"$gt": ""}}', '{"type": "feedback", "message_id": [1], "value": "up"}',
     '{"type": "lead_submit", "fields": "x"}', "\u0000\ud7ff", '{"type": "hello", "visitor_token": 12}'],
)  # fmt: skip
async def test_ws_malformed_frames_get_an_error_and_the_socket_lives_on(acme, frame):
    communicator, _ = await _ready(acme)
    await communicator.send_to(text_data=frame)
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] in ("error", "ready"), reply
    await _alive(communicator)
    await communicator.disconnect()


@ws
async def test_ws_a_huge_frame_is_refused_unparsed_and_nothing_is_saved(acme):
    communicator, _ = await _ready(acme)
    await communicator.send_to(text_data=json.dumps({"type": "message", "text": "x" * (MAX_FRAME_BYTES * 8)}))
    assert (await communicator.receive_json_from(timeout=5))["code"] == "too_long"
    await _alive(communicator)
    assert await database_sync_to_async(Message.objects.count)() == 0
    await communicator.disconnect()


@ws
async def test_ws_binary_frames_are_refused(acme):
    communicator, _ = await _ready(acme)
    await communicator.send_to(bytes_data=b"\x00\xff" * 1000)
    assert (await communicator.receive_json_from(timeout=5))["code"] == "bad_frame"
    await _alive(communicator)
    await communicator.disconnect()


@ws
async def test_ws_a_flood_past_the_rate_limit_is_refused_and_not_saved(acme, settings):
    settings.CHAT_MESSAGES_PER_MINUTE_PER_VISITOR = 5
    await clear_of_window_end(60)
    communicator, _ = await _ready(acme)
    codes = []
    for n in range(40):
        await communicator.send_json_to({"type": "message", "text": f"spam {n}", "client_id": f"c{n}"})
        reply = await communicator.receive_json_from(timeout=5)
        codes.append(reply.get("code") or reply["type"])
        while reply["type"] == "ack" or reply["type"] == "lead_form":
            if reply["type"] == "ack":
                break
            reply = await communicator.receive_json_from(timeout=5)
    assert codes[0] == "ack"
    assert set(codes[5:]) == {"rate_limited"}, codes
    saved = await database_sync_to_async(Message.objects.filter(role="visitor").count)()
    assert saved == 1  # the rest were refused (busy while the first is answered, then rate limited)
    await communicator.disconnect()


@ws
async def test_ws_thousands_of_connections_from_one_address_are_refused_past_the_limit(acme, settings):
    settings.CHAT_CONNECTIONS_PER_IP = 20
    ip = f"10.77.{next(_addresses) % 250}.1"
    await async_client().delete(connections_key(ip))
    sockets = [_socket(acme, ip=ip) for _ in range(20)]
    for communicator in sockets:
        assert (await communicator.connect())[0]
    # 1,000 attempts, at most 25 in flight: each waits as long as a busy machine needs (a 1 s connect timeout with
    # 100 at once failed on a loaded CI machine), and the outcome does not depend on the machine's speed.
    in_flight = asyncio.Semaphore(25)

    async def attempt() -> tuple[str, int]:
        async with in_flight:
            return await _refused(_socket(acme, ip=ip), timeout_s=60)

    results = await asyncio.gather(*(attempt() for _ in range(1000)))
    assert results.count(("rate_limited", 4429)) == 1000
    for communicator in sockets:
        await communicator.disconnect()
    assert int(await async_client().get(connections_key(ip))) == 0, "no slot leaks"
    assert (await _socket(acme, ip=ip).connect())[0]


@ws
@pytest.mark.parametrize("origin", [None, "https://evil.test", "null", "https://www.acme.test.evil.test",
                                    "http://www.acme.test:8443", "https://www.acme.test@evil.test"])  # fmt: skip
async def test_ws_a_wrong_or_missing_origin_is_refused(acme, origin):
    assert await _refused(_socket(acme, origin=origin)) == ("forbidden", 4403)


@ws
async def test_ws_a_forged_token_does_not_reach_anyone_elses_conversation(acme):
    owner, ready = await _ready(acme)
    token = ready["visitor_token"]
    forged = [token[:-3] + ("abc" if not token.endswith("abc") else "xyz"), token.replace(":", ";"), "x" * 5000,
              signing.TimestampSigner(key="not-our-secret", salt="parley.visitor").sign_object(
                  {"b": acme.public_id, "v": "guess"})]  # fmt: skip
    for bad in forged:
        stranger, theirs = await _ready(acme, token=bad)
        assert theirs["conversation_id"] != ready["conversation_id"]
        await stranger.disconnect()
    await owner.disconnect()


@ws
async def test_ws_an_expired_token_starts_a_new_visitor(acme):
    old = int(time.time()) - TOKEN_MAX_AGE_S - 3600
    with mock.patch.object(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(old)):
        token, visitor_id = visitor_token_issue(bot_public_id=acme.public_id)
    await database_sync_to_async(conversation_resume_or_start)(bot=acme, visitor_id=visitor_id)
    communicator, ready = await _ready(acme, token=token)
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    assert conversation.visitor_id != visitor_id
    await communicator.disconnect()


@ws
async def test_ws_another_visitors_conversation_and_messages_stay_out_of_reach(acme):
    other = await database_sync_to_async(conversation_resume_or_start)(bot=acme, visitor_id="victim")
    await database_sync_to_async(message_receive)(
        conversation=other, text="my phone is 555-0199", dispatch_answer=False
    )
    bot_answer = await database_sync_to_async(Message.objects.create)(
        conversation=other, role="bot", text="noted", status="complete"
    )
    communicator, ready = await _ready(acme, extra={"conversation_id": other.id, "visitor_id": "victim"})
    assert ready["conversation_id"] != other.id
    assert "555-0199" not in json.dumps(ready)
    await communicator.send_json_to({"type": "feedback", "message_id": bot_answer.id, "value": "down"})
    assert (await communicator.receive_json_from(timeout=5))["code"] == "not_found"
    await bot_answer.arefresh_from_db()
    assert bot_answer.feedback in ("", None)
    await communicator.disconnect()


# === what the model writes ======================================================================================

ALLOWED = allowed_hosts_from([ORIGIN, "https://docs.acme.test/help"])


@pytest.mark.parametrize(
    "written, shown",
    [
        (f"See [the offer]({EVIL}/x).", "See the offer."),
        (f"Go to {EVIL}/login now", "Go to (link removed) now"),
        ("Mail [us](mailto:x@evil.example)", "Mail us"),
        ("https://www.acme.test@evil.example/ https://evil.example\\@www.acme.test/", "(link removed) (link removed)"),
        ("[ok](https://docs.acme.test/a), https://www.acme.test/b", "[ok](https://docs.acme.test/a), https://www.acme.test/b"),
    ],
)  # fmt: skip
def test_links_to_hosts_outside_the_sources_and_allowed_sites_become_plain_text(written, shown):
    assert guard_answer(written, allowed_hosts=ALLOWED).text == shown


def test_a_long_verbatim_stretch_of_the_system_prompt_ends_the_answer_with_a_safe_message():
    system = render_system_prompt(persona="You are Acme's assistant.", passages=[Passage(1, "T", ORIGIN, "data")])
    rules = protected_text(system)
    stretch = " ".join(rules.split()[20:32])
    assert guard_answer(f"Sure! {stretch}", allowed_hosts=ALLOWED, system_prompt=system).text == SAFE_MESSAGE
    # Quoting the passages is the job, and a few words in common with the rules are not a leak.
    assert guard_answer("data [1]. Cite the passages you used.", allowed_hosts=ALLOWED, system_prompt=system).text


# === documents and crawling =====================================================================================


def _parse_refused(**kwargs) -> DocumentParseError:
    with pytest.raises(DocumentParseError) as caught:
        parse_document(**kwargs)
    return caught.value


def test_doc_a_pdf_bomb_is_refused():
    bomb = make_pdf_with_stream(zlib.compress(b"BT /F1 12 Tf (" + b"A" * (8 * 1024 * 1024) + b") Tj ET", 9))
    assert len(bomb) < 20_000
    assert _parse_refused(data=bomb, filename="bomb.pdf", limits=ParseLimits(max_pdf_stream_bytes=2**20)).reason == (
        "too_large"
    )


def test_doc_a_zip_bomb_docx_is_refused_before_it_is_unpacked():
    assert _parse_refused(data=zip_bomb_docx(inflated_bytes=50 * 2**20), filename="a.docx").reason == "too_large"


def test_doc_a_huge_csv_is_refused():
    data = ("id,name\n" + "".join(f"{i},item {i}\n" for i in range(20_001))).encode()
    assert _parse_refused(data=data, filename="huge.csv", limits=ParseLimits(max_csv_rows=20_000)).reason == (
        "too_large"
    )


def test_doc_html_full_of_scripts_yields_only_its_text():
    scripts = "".join(f"<script>steal{i}()</script><img src=x onerror=steal()>" for i in range(500))
    page = f"<html><body>{scripts}<p>Opening hours are nine to five.</p>{scripts}</body></html>"
    text = "".join(section.text for section in parse_document(data=page.encode(), filename="p.html").sections)
    assert "Opening hours are nine to five." in text
    assert "steal" not in text and "onerror" not in text


def test_doc_a_sitemap_pointing_off_host_or_looping_is_contained(site):  # noqa: F811 - the fixture
    site.routes["/sitemap.xml"] = sitemap_index(site.url("/sitemap.xml"), site.url("/pages.xml"))
    site.routes["/pages.xml"] = urlset(site.url("/a"), "https://evil.example/b", "http://169.254.169.254/latest/")
    assert [entry.url for entry in read_sitemap(site.url("/sitemap.xml"), limits=LOCAL)] == [site.url("/a")]
    assert [path for path, _ in site.requests].count("/sitemap.xml") == 1


PRIVATE_URLS = ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[::1]/",
                "http://localhost/", "file:///etc/passwd"]  # fmt: skip


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_doc_a_url_to_a_private_address_is_refused_unless_explicitly_allowed(url):
    with pytest.raises(FetchError) as caught:
        fetch_page(url, limits=FetchLimits(timeout_seconds=2))
    assert caught.value.reason in ("forbidden_address", "invalid_url")


def test_doc_private_addresses_are_fetched_only_when_explicitly_allowed(site):  # noqa: F811 - the fixture
    site.routes["/"] = html("internal")
    with pytest.raises(FetchError):
        fetch_page(site.url("/"), limits=FetchLimits(timeout_seconds=2))
    assert site.requests == []
    assert b"internal" in fetch_page(site.url("/"), limits=LOCAL).content


# === prompt injection ===========================================================================================

PERSONA = "You are Acme's support assistant. Be brief."
INFO = ModelInfo(model_id="llama", max_input_tokens=8191, max_total_tokens=8192)
GOOD = [Passage(1, "Refunds", f"{ORIGIN}/help/refunds", "Refunds take five business days.")]


def _prompt(*, passages, question) -> list[dict]:
    return build_prompt(persona=PERSONA, passages=passages, history=[], question=question, model_info=INFO,
                        count_tokens=estimate_tokens, max_new_tokens=300).messages  # fmt: skip


def _escapes_the_fence(messages: list[dict], attack: str, *, place: str) -> list[str]:
    """What is wrong with a prompt built with `attack` in a document or in the visitor's message."""
    problems = []
    system = messages[0]["content"]
    baseline = _prompt(passages=GOOD, question="When do I get my money back?")[0]["content"]
    before, after = system.split("<<<DATA>>>\n")[0], system.split("\n<<<END DATA>>>")[-1]
    if system.count("<<<DATA>>>") != 1 or system.count("<<<END DATA>>>") != 1:
        problems.append("a second fence marker")
    if before != baseline.split("<<<DATA>>>\n")[0] or after != baseline.split("\n<<<END DATA>>>")[-1]:
        problems.append("the rules around the DATA block changed")
    whole = "\n".join(message["content"] for message in messages)
    passages = 2 if place == "document" else 1
    opened, closed = re.findall(r"<<<PASSAGE \[(\d+)\]>>>", whole), re.findall(r"<<<END PASSAGE \[(\d+)\]>>>", whole)
    if opened != closed or len(opened) != passages or whole.count("<<<") != 2 + 2 * passages:
        problems.append("an extra fence marker")
    words = re.findall(r"\w{4,}", attack)[:3]
    if place == "document":
        data = system.split("<<<DATA>>>\n")[1].split("\n<<<END DATA>>>")[0]
        passage_two = data.split("<<<PASSAGE [2]>>>")[-1].split("<<<END PASSAGE [2]>>>")[0]
        if not all(word in passage_two for word in words):
            problems.append("the document text is not inside its own passage fence")
        if any(message["role"] != "system" and words and words[0] in message["content"] for message in messages):
            problems.append("the document text left the system message")
    else:
        if system != baseline:
            problems.append("the visitor's text changed the system message")
        if messages[-1]["role"] != "user" or not all(word in messages[-1]["content"] for word in words):
            problems.append("the visitor's text is not the last user message")
    return problems


@pytest.mark.parametrize("place", ["document", "visitor"])
def test_injection_input_layer_keeps_every_attack_fenced_as_data(place):
    through = {}
    for attack in ATTACKS:
        if place == "document":
            passages = [*GOOD, Passage(2, "Policy", f"{ORIGIN}/policy", f"Our policy.\n{attack.text}\nThank you.")]
            messages = _prompt(passages=passages, question="When do I get my money back?")
        else:
            messages = _prompt(passages=GOOD, question=attack.text)
        if problems := _escapes_the_fence(messages, attack.text, place=place):
            through[attack.name] = problems
    print(f"\ninjection input layer ({place}): {len(through)}/{len(ATTACKS)} attacks through")
    assert through == {}


@pytest.fixture(scope="module")
def simulator():
    with TGISimulator() as running:
        yield running


@pytest.mark.django_db(transaction=True)
def test_injection_output_layer_lets_no_obeyed_attack_reach_the_visitor(simulator, settings):
    """The model obeys every attack (the simulator answers with the attacker's payload); what reaches the visitor
    has links only to the bot's sources and allowed sites and no stretch of the system prompt. Raw payloads are
    judged the same way, to show what the guard stops."""
    stop_requests_forget()
    simulator.reset()
    forget_endpoint()
    settings.TGI_URL = simulator.url
    bot = bot_create(slug="acme", name="Acme", persona=PERSONA, allowed_origins=[ORIGIN])
    page_add(bot, title="Refunds", url=f"{ORIGIN}/help/refunds", text="Refunds take five business days.")
    victim = conversation_resume_or_start(bot=bot, visitor_id="victim")
    message_receive(conversation=victim, text="SECRET-PHONE-555-0199", dispatch_answer=False)
    rules = " ".join(protected_text(render_system_prompt(persona=PERSONA, passages=GOOD)).split()[12:60])
    through_raw, through_guarded, delivered = {}, {}, {}
    for n, attack in enumerate(ATTACKS):
        payload = attack.payload.replace("{system}", rules).replace("{system_lines}", "\n".join(rules.split()))
        simulator.configure(script_text=payload)
        conversation = conversation_resume_or_start(bot=bot, visitor_id=f"attacker-{n}")
        _, message = message_receive(conversation=conversation, text=attack.text, dispatch_answer=False)
        with GroupListener(conversation.group_name) as listener:
            answer_generate(message_id=message.id)
            _, done = listener.wait_for("chat.done")
        message.refresh_from_db()
        assert message.text == done["text"], "the saved text is the text the visitor was shown"
        delivered[attack.name] = done["text"]
        if problems := _harm(payload, rules):
            through_raw[attack.name] = problems
        if problems := _harm(done["text"], rules):
            through_guarded[attack.name] = problems
    prompts = json.dumps([request["body"] for request in simulator.generation_requests()])
    assert "SECRET-PHONE" not in prompts, "no prompt carries another visitor's conversation"
    print(f"\ninjection output layer: {len(through_raw)}/{len(ATTACKS)} harmful if unguarded, "
          f"{len(through_guarded)}/{len(ATTACKS)} reach the visitor")  # fmt: skip
    assert len(through_raw) >= 25, "the payloads are harmful without the guard (else this test proves nothing)"
    assert through_guarded == {}


def _harm(text: str, rules: str) -> list[str]:
    """Judged independently of chatbot.output_guard: any URL scheme outside links to acme.test, or a run of eight
    words of the rules."""
    problems = []
    flat = re.sub(r"[\t\n\r]", "", text)
    for match in re.finditer(r"(?i)(https?|mailto):", flat):
        after = flat[match.end() :]
        if not re.match(r"(?i)//(www\.|docs\.)?acme\.test(?=[/)\s:]|$)", after):
            problems.append(f"a link: {flat[match.start() : match.start() + 50]!r}")
    words, rule_words = re.findall(r"\w+", text.lower()), re.findall(r"\w+", rules.lower())
    longest = SequenceMatcher(None, words, rule_words, autojunk=False).find_longest_match()
    if longest.size >= 8:
        problems.append(f"{longest.size} words of the system prompt")
    return problems


# === access =====================================================================================================


def _routes(values: dict | None = None) -> list[tuple[str, str]]:
    """(name, path) of every dashboard and leads route, with made-up ids (or those in `values`)."""
    values = {"conversation_id": "c0nv", "slug": "acme", "source_id": "1", "answer_id": "1", "member_id": "1",
              "lead_id": "1", "which": "identity", "key_id": "1", "subscription_id": "1", **(values or {})}  # fmt: skip
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("dashboard/") and "login" not in route:
                # An id the caller did not give: 1 (a route added later is checked too).
                path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), 1)), route)
                found.append((pattern.name, path))

    walk(get_resolver().url_patterns)
    return found


ROUTES = _routes()


def test_access_the_route_list_covers_the_dashboard_and_the_leads_pages():
    names = {name for name, _ in ROUTES}
    assert {"conversations", "transcript", "take-over", "staff-message", "bots", "leads-list", "leads-export",
            "lead-detail", "visitor-delete", "staff-edit", "logout"} <= names  # fmt: skip
    assert len(ROUTES) >= 27


@pytest.mark.django_db
@pytest.mark.parametrize("name, path", ROUTES)
def test_access_anonymous_users_are_refused_everywhere(acme, name, path):
    client = Client()
    for response in (client.get(path), client.post(path)):
        if name == "logout":
            assert response.status_code in (302, 405)
            continue
        assert response.status_code in (302, 403, 405), (path, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/dashboard/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("name, path", [(n, p) for n, p in ROUTES if n != "logout"])
def test_access_logged_in_users_who_are_not_staff_are_refused(acme, outsider, name, path):
    client = logged_in(outsider)
    assert client.get(path).status_code in (403, 405)
    assert client.post(path).status_code in (403, 405)


ADMIN_ONLY = ["bots", "bot-new", "bot-import", "bot-edit", "bot-knowledge", "knowledge-progress", "source-resync",
              "source-delete", "bot-export", "staff", "staff-new", "staff-edit", "integrations", "api-key-new",
              "api-key-revoke", "webhook-new", "webhook-delete", "bot-secret-rotate"]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("name, path", [(n, p) for n, p in ROUTES if n in ADMIN_ONLY])
def test_access_agents_cannot_use_administrator_routes(bot, agent, name, path):
    client = logged_in(agent)
    assert client.get(path).status_code in (403, 405)
    assert client.post(path).status_code in (403, 405)


@pytest.mark.django_db
@pytest.mark.parametrize("name, path", [(n, p) for n, p in ROUTES if n != "logout"])
def test_access_every_form_post_needs_the_csrf_token(bot, admin, name, path):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = client.post(path, {"text": "x"})
    assert response.status_code == 403, (path, response.status_code)
    assert b"CSRF" in response.content


@pytest.mark.django_db
def test_access_lead_data_only_reaches_staff_allowed_to_see_it(bot, agent, agent_with_leads, other_agent):
    paths = [f"/dashboard/bots/{bot.slug}/leads/", f"/dashboard/bots/{bot.slug}/leads.csv"]
    for path in paths:
        assert logged_in(agent).get(path).status_code in (403, 404)
        assert logged_in(other_agent).get(path).status_code in (403, 404)
        assert logged_in(agent_with_leads).get(path).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_access_the_staff_websocket_refuses_anonymous_outsiders_and_other_sites(admin, outsider):
    for communicator in [await staff_socket_for(None), await staff_socket_for(outsider),
                         await staff_socket_for(admin, origin="https://evil.test")]:  # fmt: skip
        connected, _ = await communicator.connect()
        if connected:
            assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
        await communicator.disconnect()


async def staff_socket_for(user, **kwargs):
    from tests.dashboard.conftest import staff_socket

    return await staff_socket(user, **kwargs)


@pytest.mark.django_db
def test_access_pages_send_security_headers_and_the_chat_page_may_be_framed_only_by_allowed_sites(acme, client):
    login = client.get("/dashboard/login/")
    assert login["X-Frame-Options"] == "DENY"
    assert login["X-Content-Type-Options"] == "nosniff"
    assert login["Referrer-Policy"] == "strict-origin-when-cross-origin"
    chat = client.get(f"/chat/{acme.public_id}/", HTTP_HOST="localhost")
    csp = chat["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {ORIGIN}" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp
    assert "X-Frame-Options" not in chat, "the widget's iframe is governed by frame-ancestors"
    loader = client.get("/widget.js")
    assert loader.status_code == 200 and loader["X-Content-Type-Options"] == "nosniff"


def _csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.django_db
def test_access_every_html_page_but_the_chat_page_carries_the_strict_csp(bot, superuser, conversation):
    source = source_add_faq(knowledge_base=bot.knowledge_base, question="Refunds?", answer="Five days.")
    lead = Lead.objects.create(bot=bot, conversation=conversation, email="v@x.test")
    member = staff_member_save(username="ada", role="admin", password="correct-horse-battery").user.staff_member
    ids = {"conversation_id": conversation.id, "slug": bot.slug, "source_id": source.id, "answer_id": 1,
           "member_id": member.id, "lead_id": lead.id}  # fmt: skip
    client = logged_in(superuser)
    pages = ["/", "/admin/", "/admin/chatbot/bot/", f"/admin/chatbot/bot/{bot.id}/change/", "/no-such-page/"]
    pages += [path for name, path in _routes(ids) if name != "logout"]
    checked = []
    for path in pages:
        response = client.get(path, HTTP_HOST="localhost:8000")
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        checked.append(path)
        csp = _csp_directives(response["Content-Security-Policy"])
        assert csp["default-src"] == ["'self'"], path
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"], path
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"], path
        assert csp["connect-src"] == ["'self'", "ws://localhost:8000", "wss://localhost:8000"], path
    assert len(checked) >= 20, checked
    anonymous = Client().get("/dashboard/login/", HTTP_HOST="localhost:8000")
    assert _csp_directives(anonymous["Content-Security-Policy"])["frame-ancestors"] == ["'none'"]

    chat = Client().get(f"/chat/{bot.public_id}/", HTTP_HOST="localhost:8000")
    assert chat["Content-Security-Policy"] == chat_page_csp(bot=bot, host="localhost:8000"), (
        "the chat page keeps its own"
    )


def test_access_production_settings_use_secure_cookies_and_pass_check_deploy():
    environment = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "a-real-production-secret-" + "x7Qz" * 12,
        "ALLOWED_HOSTS": "chat.example.com",
    }
    check = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                           cwd=BASE_DIR, env=environment, capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0 and "no issues" in check.stdout, check.stdout + check.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings as s; print("
         "json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT,"
         " s.SECURE_HSTS_SECONDS > 0]))"],
        cwd=BASE_DIR, env={**environment, "DJANGO_SETTINGS_MODULE": "chatbot.settings"}, capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == [True, True, True, True, True], probe.stderr
