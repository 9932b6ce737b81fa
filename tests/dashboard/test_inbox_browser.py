"""The inbox and corrections in real Chromium: an administrator assigns a visitor's conversation to an agent, whose
"Mine" tab shows it live, and the agent answers with a saved reply (`/` in the takeover box); a staff member
corrects a bot answer and approves it, and the same question then gets the correction verbatim.

Parley is a real Daphne process (pages, both websockets), answers come from a real Celery worker streaming from the
TGI simulator; the module commits its data and flushes it at the end, like tests/dashboard/test_browser.py.
PARLEY_SCREENSHOTS=1 also writes docs/screenshots/dashboard-{inbox,saved-reply,correction,insights}.png.
"""

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import pytest
from django.core.management import call_command

from chatbot.bots.services import bot_create
from chatbot.dashboard.services import staff_member_save
from chatbot.models import ApprovedAnswer, Conversation, InsightRun, Message
from devtools.browser import chromium, eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess
from devtools.tgi_simulator import TGISimulator

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct-horse-battery"
GENERATED = "Our team ships parcels all over the world; times vary."
SAVED_REPLY = "Your order left our warehouse this morning: you will get the tracking link by email within the hour."
CORRECTION = "Yes: we ship to Iceland in 5 to 7 working days, for a flat 15 € [no customs fees]."


@pytest.fixture(scope="module")
def browser(django_db_setup) -> Iterator:
    with chromium() as launched:
        from playwright.sync_api import expect

        # Real events on a shared, busy machine (the worker loads the embedding model on its first answer).
        expect.set_options(timeout=30_000)
        yield launched
        expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("inbox-logs")
    started: list[ServerProcess] = []
    with pytest.MonkeyPatch.context() as env, django_db_blocker.unblock(), TGISimulator() as sim:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # Playwright's loop in this thread; ORM calls are plain sync
        try:
            sim.configure(ttft_s=0.05, tokens_per_s=80, script_text=GENERATED)
            bot = bot_create(slug="acme", name="Acme Outdoor", color="#0f766e", model_endpoint=sim.url)
            staff_member_save(username="ada", role="admin", display_name="Ada", password=PASSWORD)
            staff_member_save(username="alan", role="agent", bots=[bot], display_name="Alan", password=PASSWORD)
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
            yield {"url": started[0].url, "bot": bot, "sim": sim, "logs": logs}
        finally:
            for server in started:
                server.stop()
            call_command("flush", interactive=False, verbosity=0)


def shot(page, name: str) -> None:
    if os.environ.get("PARLEY_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


def staff_page(browser, url: str, username: str):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/dashboard/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#live-status")).to_have_text("Live")
    return context, page


def visitor_page(browser, url: str, bot):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 420, "height": 760})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/chat/{bot.public_id}/")
    expect(page.locator("#handoff-button")).to_be_enabled()
    return context, page


def ask(visitor, text: str) -> None:
    from playwright.sync_api import expect

    visitor.fill("#composer-input", text)
    visitor.press("#composer-input", "Enter")
    expect(visitor.locator(".msg-visitor", has_text=text)).to_be_visible()


def test_an_admin_assigns_a_conversation_and_the_agent_answers_with_a_saved_reply(browser, stack):
    from playwright.sync_api import expect

    url, bot = stack["url"], stack["bot"]
    contexts = []
    try:
        ada_context, ada = staff_page(browser, url, "ada")
        alan_context, alan = staff_page(browser, url, "alan")
        visitor_context, visitor = visitor_page(browser, url, bot)
        contexts += [ada_context, alan_context, visitor_context]

        # The agent saves a reply for the bot on the replies page.
        alan.goto(f"{url}/dashboard/replies/")
        alan.fill("#saved-reply-form input[name=shortcut]", "shipped")
        alan.select_option("#saved-reply-form select[name=bot]", "acme")
        alan.fill("#saved-reply-form textarea[name=text]", SAVED_REPLY)
        alan.click("#saved-reply-form button[type=submit]")
        expect(alan.locator("#saved-replies-list tr[data-shortcut=shipped]")).to_contain_text(SAVED_REPLY)
        alan.goto(f"{url}/dashboard/?view=mine")
        expect(alan.locator("#conversation-list tr.empty")).to_be_visible()
        expect(alan.locator("#live-status")).to_have_text("Live")  # listening before anything is assigned

        ask(visitor, "Where is my order 1234? I paid last week.")
        expect(visitor.locator(".msg-bot .bubble").last).to_contain_text("times vary")

        # The administrator sees it arrive and gives it to Alan.
        row = ada.locator("#conversation-list tbody tr", has_text="Where is my order 1234")
        expect(row).to_have_count(1)
        row.get_by_role("link").click()
        expect(ada.locator("#visitor-id")).not_to_be_empty()
        ada.select_option("#assignee", label="Alan")
        ada.click("#assign")
        eventually(lambda: Conversation.objects.filter(assigned_to__username="alan").exists(), what="the assignment")

        # Alan's "Mine" tab shows it without a reload.
        mine = alan.locator("#conversation-list tbody tr", has_text="Where is my order 1234")
        expect(mine).to_have_count(1)
        expect(mine.locator("td.assignee")).to_have_text("Alan")
        shot(alan, "inbox")
        mine.get_by_role("link").click()
        alan.click("#take-over")
        expect(visitor.locator(".msg-system", has_text="Alan joined the conversation")).to_be_visible()

        # "/" and the start of the shortcut list the reply; Enter puts it in the box, Enter again sends it.
        expect(alan.locator("#reply-suggestions")).to_be_attached()  # the page's modules have run
        alan.locator("#staff-text").press_sequentially("/ship")
        suggestion = alan.locator("#reply-suggestions li", has_text="/shipped")
        expect(suggestion).to_be_visible()
        shot(alan, "saved-reply")
        alan.press("#staff-text", "Enter")
        expect(alan.locator("#staff-text")).to_have_value(SAVED_REPLY)
        expect(alan.locator("#reply-suggestions")).to_be_hidden()
        alan.press("#staff-text", "Enter")

        expect(visitor.locator(".msg-staff")).to_contain_text(SAVED_REPLY)
        expect(visitor.locator(".msg-staff .msg-author")).to_have_text("Alan")
        eventually(
            lambda: Message.objects.filter(role="staff", text=SAVED_REPLY, staff_user__username="alan").exists(),
            what="the staff message",
        )

        # Resolved: it leaves Alan's open inbox, and the administrator's list says so, live.
        ada.goto(f"{url}/dashboard/")
        expect(ada.locator("#live-status")).to_have_text("Live")
        alan.click("#resolve")
        expect(alan.locator(".badge-resolved")).to_be_visible()
        expect(
            ada.locator("#conversation-list tbody tr", has_text="order 1234").locator(".badge-resolved")
        ).to_be_visible()
        alan.goto(f"{url}/dashboard/?view=mine")
        expect(alan.locator("#conversation-list tr.empty")).to_be_visible()
    finally:
        for context in contexts:
            context.close()


def test_a_corrected_answer_comes_back_verbatim_to_the_same_question(browser, stack):
    from playwright.sync_api import expect

    url, bot, sim = stack["url"], stack["bot"], stack["sim"]
    contexts = []
    try:
        staff_context, staff = staff_page(browser, url, "ada")
        first_context, first = visitor_page(browser, url, bot)
        contexts += [staff_context, first_context]

        ask(first, "Do you ship to Iceland?")
        expect(first.locator(".msg-bot .bubble").last).to_contain_text("times vary")
        answer = eventually(
            lambda: (
                Message.objects.filter(role="bot", in_reply_to__text="Do you ship to Iceland?", status="complete")
                .select_related("conversation")
                .first()
            ),
            what="the generated answer",
        )

        staff.goto(f"{url}/dashboard/conversations/{answer.conversation_id}/")
        item = staff.locator(f"#message-{answer.id}")
        item.locator("details.correct summary").click()
        item.locator("textarea[name=corrected_text]").fill(CORRECTION)
        item.get_by_role("button", name="Save and give it to similar questions").click()
        expect(staff.locator(f"#message-{answer.id} .corrected")).to_contain_text(CORRECTION)
        expect(staff.locator(f"#message-{answer.id} .corrected")).to_contain_text("Approved answer")
        shot(staff, "correction")
        assert ApprovedAnswer.objects.get().source_message_id == answer.id

        # Another visitor asks the same question: the correction, word for word, without asking the model.
        asked_before = len(sim.generation_requests())
        second_context, second = visitor_page(browser, url, bot)
        contexts.append(second_context)
        ask(second, "Do you ship to Iceland?")
        expect(second.locator(".msg-bot .bubble").last).to_have_text(CORRECTION)
        replied = eventually(
            lambda: Message.objects.filter(role="bot", status="complete", text=CORRECTION).first(),
            what="the approved answer saved",
        )
        assert replied.finish_reason == "approved_answer" and replied.conversation_id != answer.conversation_id
        assert len(sim.generation_requests()) == asked_before

        # The analytics page's analysis: topics and summaries by the bot's own model, in the worker.
        sim.configure(
            script_replies={
                "<<<QUESTIONS>>>": "Shipping to Iceland",
                "<<<TRANSCRIPT>>>": "Summary: Asked where their order was, got a tracking link.\nSentiment: positive",
            }
        )
        staff.goto(f"{url}/dashboard/analytics/")
        staff.click("#insights-refresh")
        run = eventually(
            lambda: InsightRun.objects.filter(bot=bot, status__in=["done", "failed"]).first(),
            timeout_s=120,
            what="the insights run",
        )
        assert run.status == "done", run.error
        staff.reload()
        expect(staff.locator("#insights [data-run-status=done]")).to_contain_text("on demand analysis")
        expect(staff.locator("#insights .topics-table")).to_contain_text("Shipping to Iceland")
        shot(staff, "insights")
    finally:
        for context in contexts:
            context.close()
