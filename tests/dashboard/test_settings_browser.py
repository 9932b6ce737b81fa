"""The bot's settings and knowledge without JSON, and the first pages a new user sees on a phone, in real
Chromium: an administrator builds a lead form with buttons and checkboxes and sees it in the widget, sets business
hours, uploads a .zip of documents, and crawls a small local website that has no sitemap (private addresses allowed
for that source), the progress arriving live; the home page, the widget and the dashboard fit a 390 px phone.

Parley is a real Daphne process with a real Celery worker (ingestion); the website is a local HTTP server started
by the test. Without Debian's Chromium the tests skip (fail with PARLEY_REQUIRE_BROWSER=1).

PARLEY_SCREENSHOTS=1 also writes docs/screenshots/dashboard-lead-form-builder.png, dashboard-business-hours.png,
dashboard-knowledge-bulk.png, lead-form-built.png, home-phone-open.png and dashboard-phone.png.
"""

import io
import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import pytest
from django.core.management import call_command

from chatbot.bots.services import DEMO_BOT_SLUG, bot_create
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Bot, Conversation, Message
from devtools.browser import chromium, eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess
from knowledge.models import Document, Source
from tests.knowledge.local_site import LocalSite

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def browser(django_db_setup) -> Iterator:
    with chromium() as launched:
        yield launched


def _conversation_with_markdown(bot):
    """A conversation on a long page address (the phone's conversation table) with a Markdown answer."""
    conversation = conversation_resume_or_start(
        bot=bot, visitor_id="markdown-visitor", page_url="https://www.acme.test/" + "very-long-path/" * 12, referrer=""
    )
    question = Message.objects.create(conversation=conversation, role="visitor", text="How do returns work? **now**")
    Message.objects.create(
        conversation=conversation, role="bot", in_reply_to=question, status="complete",
        text="Returns are **free**:\n\n- print the label\n- drop the parcel [1]",
    )  # fmt: skip
    Conversation.objects.filter(id=conversation.id).update(last_message_at=question.created_at)
    return conversation


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory):
    logs = tmp_path_factory.mktemp("settings-logs")
    started: list[ServerProcess] = []
    site = LocalSite().start()
    with pytest.MonkeyPatch.context() as env, django_db_blocker.unblock():
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # Playwright's loop in this thread; ORM calls are plain sync
        try:
            bot = bot_create(slug="acme", name="Acme Outdoor", color="#0f766e", greeting="Hi! Ask me anything.")
            bot_create(slug=DEMO_BOT_SLUG, name="Parley demo", greeting="Hi! Ask me about Parley.")
            conversation = _conversation_with_markdown(bot)
            staff_member_save(username="alan", role="admin", display_name="Alan", password=PASSWORD)
            guarded = {"DJANGO_ALLOW_ASYNC_UNSAFE": ""}
            with ThreadPoolExecutor(2) as pool:
                futures = [
                    pool.submit(start_daphne, log_path=logs / "daphne.log", **guarded),
                    pool.submit(start_celery_worker, log_path=logs / "worker.log", concurrency=2, **guarded),
                ]
                for future in futures:
                    with suppress(Exception):
                        started.append(future.result())
            if len(started) < 2:
                raise RuntimeError(f"Daphne or the worker did not start; logs in {logs}")
            yield {"url": started[0].url, "bot": bot, "site": site, "conversation": conversation}
        finally:
            for server in started:
                server.stop()
            site.stop()
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def staff(browser, stack):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: m.type == "error" and problems.append(f"{m.text} {m.location.get('url', '')}"))
    page.goto(f"{stack['url']}/dashboard/login/")
    page.fill("input[name=username]", "alan")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.problems = problems
    yield page
    context.close()


def shot(page, name: str, **options) -> None:
    if os.environ.get("PARLEY_SCREENSHOTS") == "1":
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **options)


def test_it_builds_a_lead_form_without_json_and_the_widget_shows_it(browser, stack, staff):
    from playwright.sync_api import expect

    staff.goto(f"{stack['url']}/dashboard/bots/acme/")
    builder = staff.locator("#lead-form-builder")
    expect(builder).to_be_visible()
    expect(staff.locator("textarea[name=lead_form]")).to_be_hidden()  # folded away under "Edit as JSON"

    builder.get_by_label("Ask visitors for their contact details").check()
    builder.locator("select[name=lead-new-type]").select_option("name")
    builder.get_by_role("button", name="Add field").click()
    builder.locator("select[name=lead-new-type]").select_option("select")
    builder.get_by_role("button", name="Add field").click()
    builder.locator("select[name=lead-new-type]").select_option("consent")
    builder.get_by_role("button", name="Add field").click()

    fields = builder.locator(".builder-field")
    expect(fields).to_have_count(4)  # the email field it starts with, and the three added
    fields.nth(1).get_by_label("Label").fill("Your name")
    fields.nth(2).get_by_label("Label").fill("Team size")
    fields.nth(2).get_by_label("Options, one per line").fill("1-10\n11-50\n51+")
    fields.nth(2).get_by_label("Required").check()
    fields.nth(3).get_by_label("Consent text").fill("I agree that Acme may contact me about my request.")
    # The name first: moved above the email field.
    builder.get_by_role("button", name="Move Your name up").click()
    expect(builder.locator(".builder-field").first).to_have_attribute("data-type", "name")
    builder.locator("input[name=lead-title]").fill("Talk to our sales team")
    builder.get_by_label("As soon as the chat opens").check()

    # The preview is the widget's own form, with the same labels and order.
    preview = builder.locator(".lead-preview")
    expect(preview.locator(".lead-title")).to_have_text("Talk to our sales team")
    expect(preview.locator(".lead-label")).to_have_text(
        ["Your name", "Email *", "Team size *", "I agree that Acme may contact me about my request. *"]
    )
    shot(staff, "dashboard-lead-form-builder", full_page=True)

    staff.get_by_role("button", name="Save settings").click()
    expect(staff.locator(".flash-success")).to_contain_text("Settings saved")
    bot = Bot.objects.get(slug="acme")
    assert bot.lead_form == {
        "fields": [
            {"name": "name", "type": "name", "label": "Your name"},
            {"name": "email", "type": "email", "required": True},
            {"name": "select", "type": "select", "options": ["1-10", "11-50", "51+"], "label": "Team size",
             "required": True},
            {"name": "consent", "type": "consent", "required": True,
             "label": "I agree that Acme may contact me about my request."},
        ],
        "triggers": {"cannot_answer": True, "no_human": True, "before_chat": True},
        "title": "Talk to our sales team",
    }  # fmt: skip
    assert staff.problems == []

    visitor_context = browser.new_context(viewport={"width": 420, "height": 900})
    try:
        visitor = visitor_context.new_page()
        visitor.goto(f"{stack['url']}/chat/{bot.public_id}/")
        form = visitor.locator(".lead-form")
        expect(form.locator(".lead-title")).to_have_text("Talk to our sales team")
        expect(form.get_by_label("Team size")).to_be_visible()
        expect(form.get_by_label("Team size").locator("option")).to_have_text(["Choose…", "1-10", "11-50", "51+"])
        expect(form.get_by_label("I agree that Acme may contact me")).to_be_visible()
        shot(visitor, "lead-form-built")
    finally:
        visitor_context.close()


def test_it_sets_business_hours_without_json(stack, staff):
    from playwright.sync_api import expect

    staff.goto(f"{stack['url']}/dashboard/bots/acme/")
    editor = staff.locator("#business-hours-editor")
    editor.get_by_label("Always open").uncheck()
    editor.locator("input[name=hours-timezone]").fill("Europe/Paris")
    editor.get_by_label("Saturday", exact=True).check()
    editor.get_by_role("button", name="Add a second range on Saturday").click()
    editor.get_by_label("Saturday, closes (second range)").fill("16:30")
    editor.get_by_label("Friday", exact=True).uncheck()
    shot(staff, "dashboard-business-hours", full_page=True)
    staff.get_by_role("button", name="Save settings").click()
    expect(staff.locator(".flash-success")).to_contain_text("Settings saved")
    hours = Bot.objects.get(slug="acme").business_hours
    assert hours == {
        "timezone": "Europe/Paris",
        "days": {
            "mon": ["09:00", "18:00"], "tue": ["09:00", "18:00"], "wed": ["09:00", "18:00"],
            "thu": ["09:00", "18:00"], "sat": [["09:00", "12:00"], ["14:00", "16:30"]],
        },
    }  # fmt: skip
    # Loaded again, the editor shows what was saved.
    staff.reload()
    expect(editor.get_by_label("Saturday, closes (second range)")).to_have_value("16:30")
    expect(editor.get_by_label("Friday", exact=True)).not_to_be_checked()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_it_uploads_a_zip_and_the_progress_arrives_live(stack, staff, tmp_path):
    from playwright.sync_api import expect

    archive = tmp_path / "help-centre.zip"
    archive.write_bytes(
        _zip({
            "shipping.md": b"# Shipping\n\nWe ship to every country in the European Union within three days.",
            "returns/policy.html": b"<html><body><h1>Returns</h1><p>Return any item within 30 days.</p></body></html>",
            "photo.jpg": b"\xff\xd8\xff not a document",
        })
    )  # fmt: skip
    staff.goto(f"{stack['url']}/dashboard/bots/acme/knowledge/")
    expect(staff.locator("#live-status")).to_have_text("Live")
    staff.get_by_label("Upload").check()
    staff.locator("input[name=file]").set_input_files(str(archive))
    staff.get_by_role("button", name="Add source").click()

    expect(staff.locator(".flash-error")).to_contain_text("“help-centre.zip › photo.jpg” was left out")
    rows = staff.locator("#sources tbody tr", has_text="help-centre.zip ›")
    expect(rows).to_have_count(2)
    # Ready without a reload: the worker's progress reaches the page over the dashboard socket.
    expect(rows.locator(".status[data-status=ready]")).to_have_count(2, timeout=90_000)
    expect(rows.first.locator(".synced time")).to_be_visible()
    expect(rows.first.locator(".allow-private")).to_be_hidden()  # offered only for a private address refused
    assert Document.objects.filter(source__title__startswith="help-centre.zip", status="indexed").count() == 2
    assert staff.problems == []


def test_it_crawls_a_small_local_site_with_no_sitemap(stack, staff):
    from playwright.sync_api import expect

    site = stack["site"]
    staff.goto(f"{stack['url']}/dashboard/bots/acme/knowledge/")
    expect(staff.locator("#live-status")).to_have_text("Live")
    staff.get_by_label("Website").check()
    staff.get_by_label("Address", exact=True).fill(site.url + "/")
    staff.get_by_label("At most links away from the start page").fill("2")
    staff.get_by_label("Never these paths").fill("/returns/*")

    # Without the flag, the local address is refused with the whole reason, and nothing is added.
    staff.get_by_role("button", name="Add source").click()
    expect(staff.locator(".has-error")).to_contain_text("a private or internal address; refused to protect")
    expect(staff.locator(".flash-success")).to_have_count(0)
    assert not Source.objects.filter(kind="site").exists()

    staff.get_by_label("Website").check()
    staff.get_by_label("Allow private network addresses").check()
    staff.get_by_role("button", name="Add source").click()
    expect(staff.locator(".flash-success")).to_contain_text("Website added; the crawl has started.")
    row = staff.locator("#sources tbody tr", has_text=site.url)
    expect(row.locator(".status")).to_have_attribute("data-status", "ready", timeout=90_000)
    expect(row.locator(".progress-text")).to_have_text("4/4")
    shot(staff, "dashboard-knowledge-bulk", full_page=True)
    source = Source.objects.get(kind="site")
    titles = set(Document.objects.filter(source=source).values_list("title", flat=True))
    assert titles == {"Acme home", "Shipping", "Norway", "Returns"}  # not the excluded form, nor robots' private page
    assert "/sitemap.xml" not in site.page_requests()
    assert staff.problems == []


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def _inside_viewport(page, locator) -> None:
    """Wholly on screen (once its opening animation has ended)."""

    def inside():
        box = locator.bounding_box()
        return (
            box
            and box["x"] >= 0
            and box["x"] + box["width"] <= 390
            and box["y"] >= 0
            and box["y"] + box["height"] <= 844
        )

    eventually(inside, timeout_s=5, what=f"{locator} inside the 390 x 844 screen: {locator.bounding_box()}")


def test_it_fits_a_390px_phone(browser, stack):
    """The home page with its snippet, the launcher, the panel Parley.open() draws, and the conversation table."""
    from playwright.sync_api import expect

    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{stack['url']}/")
        expect(page.locator("pre.snippet")).to_contain_text("/widget.js")
        launcher = page.locator("button.l")
        expect(launcher).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        _inside_viewport(page, launcher)
        page.evaluate("window.Parley.open()")
        panel = page.locator(".o .p")
        expect(panel).to_be_visible()
        _inside_viewport(page, panel)
        shot(page, "home-phone-open")

        page.goto(f"{stack['url']}/dashboard/login/")
        page.fill("input[name=username]", "alan")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("#conversation-list tbody tr", has_text="How do returns work")).to_be_visible()
        # Once the page's scripts have run (they reformat the dates), the table scrolls inside itself.
        eventually(lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, what="a page 390 px wide")
        shot(page, "dashboard-phone", full_page=True)
    finally:
        context.close()


def test_the_transcript_renders_markdown_like_the_widget_and_dates_like_live_rows(stack, staff):
    from playwright.sync_api import expect

    conversation = stack["conversation"]
    staff.goto(f"{stack['url']}/dashboard/conversations/{conversation.id}/")
    answer = staff.locator(".msg-bot .msg-text")
    expect(answer.locator("strong")).to_have_text("free")
    expect(answer.locator("li")).to_have_count(2)
    assert "**" not in answer.inner_text()
    expect(staff.locator(".msg-visitor .msg-text")).to_have_text("How do returns work? **now**")  # typed, not Markdown
    # Server-rendered times are shown as the live ones are: the browser's formatter, in the reader's time zone.
    time = staff.locator(".msg-visitor time")
    expected = staff.evaluate(
        "iso => new Date(iso).toLocaleString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'})",
        time.get_attribute("datetime"),
    )
    expect(time).to_have_text(expected)
    staff.goto(f"{stack['url']}/dashboard/")
    row_time = staff.locator(f"tr[data-conversation-id='{conversation.id}'] time")
    expected = staff.evaluate(
        "iso => new Date(iso).toLocaleString([], {day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit'})",
        row_time.get_attribute("datetime"),
    )
    expect(row_time).to_have_text(expected)
    assert staff.problems == []
