"""The lead form end to end in real Chromium: Parley is a real Daphne process, deliveries go through a real Celery
worker to a CRM (a local HTTP server). The visitor fills the form inline in the widget, is told clearly that the
email is wrong, corrects it and sends; the lead is in the staff's leads list and at the CRM, correctly signed.

PARLEY_SCREENSHOTS=1 also writes docs/screenshots/lead-form.png (the form with the inline error)."""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from chatbot.leads.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_signature_verify
from chatbot.models import Bot, Lead
from devtools.browser import eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess

from ..conftest import CRM, LEAD_FORM

pytestmark = [pytest.mark.browser, pytest.mark.django_db]

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "screenshots" / "lead-form.png"
HOST_PAGE = "https://www.acme.test/pricing?utm_source=google&utm_medium=cpc&utm_campaign=brand"


@dataclass
class Stack:
    daphne: ServerProcess
    worker: ServerProcess
    crm: CRM
    bot: Bot

    def logs(self) -> str:
        return f"--- daphne ---\n{self.daphne.log()[-3000:]}\n--- worker ---\n{self.worker.log()[-3000:]}"


@pytest.fixture(scope="module")
def stack(browser, django_db_blocker, tmp_path_factory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("lead-logs")
    crm = CRM().start()
    started: list[ServerProcess] = []
    with pytest.MonkeyPatch.context() as env, django_db_blocker.unblock():
        # Playwright's sync API keeps an event loop in this thread; the ORM calls here are plain synchronous ones.
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        try:
            bot = Bot.objects.create(
                slug="acme",
                name="Acme Outdoor",
                color="#0f766e",
                greeting="Hi! I'm Acme's assistant.",
                lead_form={**LEAD_FORM, "triggers": {**LEAD_FORM["triggers"], "before_chat": True}},
                crm_webhook_url=crm.url,
            )
            User.objects.create_superuser("boss", "boss@acme.test", "correct horse battery staple")
            guarded = {"DJANGO_ALLOW_ASYNC_UNSAFE": ""}
            started.append(start_daphne(log_path=logs / "daphne.log", **guarded))
            # The CRM is on 127.0.0.1: webhooks may reach it only with private addresses allowed.
            started.append(
                start_celery_worker(
                    log_path=logs / "worker.log", concurrency=2, PARLEY_ALLOW_PRIVATE_URLS="1", **guarded
                )
            )
            yield Stack(daphne=started[0], worker=started[1], crm=crm, bot=bot)
        finally:
            for server in started:
                server.stop()
            crm.stop()
            call_command("flush", interactive=False, verbosity=0)


def test_a_visitor_leaves_a_lead_in_the_widget_and_it_reaches_the_staff_and_the_crm(browser, stack, request):
    context = browser.new_context(viewport={"width": 420, "height": 1010})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and "favicon" not in message.location.get("url", "")
            and problems.append(f"{message.text} {message.location.get('url')}")
        ),
    )
    try:
        page.goto(f"{stack.daphne.url}/chat/{stack.bot.public_id}/?page={quote(HOST_PAGE, safe='')}")
        form = page.locator(".lead-form")
        expect(form).to_be_visible()
        expect(form.get_by_text("Talk to our sales team")).to_be_visible()
        form.get_by_label("Your name").fill("Ada Lovelace")
        form.get_by_label("Work email").fill("ada@example")
        form.get_by_label("Team size").select_option("11-50")
        form.get_by_label("I agree that Acme may contact me").check()
        form.get_by_role("button", name="Send").click()

        email = form.get_by_label("Work email")
        expect(form.get_by_text("Enter a valid email address.")).to_be_visible()
        expect(email).to_have_attribute("aria-invalid", "true")
        expect(email).to_be_focused()
        error_id = email.get_attribute("aria-describedby")
        expect(page.locator(f"#{error_id}")).to_have_text("Enter a valid email address.")
        if os.environ.get("PARLEY_SCREENSHOTS") == "1":
            page.screenshot(path=str(SCREENSHOT))
        assert not Lead.objects.exists()

        email.fill("ada@example.com")
        form.get_by_role("button", name="Send").click()
        expect(page.locator(".lead-saved")).to_have_text("Thanks! Our team will get back to you shortly.")
        expect(page.locator(".lead-form")).to_have_count(0)

        lead = eventually(lambda: Lead.objects.first(), timeout_s=15.0, what="the lead")
        assert lead.utm == {"source": "google", "medium": "cpc", "campaign": "brand"}
        request_ = eventually(lambda: stack.crm.delivered(), timeout_s=15.0, what=f"the webhook\n{stack.logs()}")[0]
        assert webhook_signature_verify(
            secret=stack.bot.crm_webhook_secret,
            timestamp=request_.headers[TIMESTAMP_HEADER],
            body=request_.body,
            signature=request_.headers[SIGNATURE_HEADER],
        )
        assert request_.json["lead"]["email"] == "ada@example.com"
        assert request_.json["lead"]["fields"]["size"] == "11-50"

        # The staff member logs in and finds the lead, delivered, in the bot's leads.
        staff = context.new_page()
        staff.goto(f"{stack.daphne.url}/admin/login/?next=/dashboard/bots/acme/leads/")
        staff.fill("#id_username", "boss")
        staff.fill("#id_password", "correct horse battery staple")
        staff.click("input[type=submit]")
        expect(staff).to_have_url(f"{stack.daphne.url}/dashboard/bots/acme/leads/")
        row = staff.locator("table.leads tbody tr", has_text="ada@example.com")
        expect(row).to_contain_text("Ada Lovelace")
        expect(row).to_contain_text("CRM webhook: Delivered")
        assert problems == []
    finally:
        context.close()
