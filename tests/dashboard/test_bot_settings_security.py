"""What an administrator can put in a bot's settings that reaches visitors or other servers: the sites allowed to
embed the chat (they end up in the chat page's Content-Security-Policy), the bot's own model endpoint and its key,
and bot files, which go through the same form and show what they change before it is applied."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from chatbot.bots import botfiles
from chatbot.chat.widget import chat_page_csp
from chatbot.models import Bot

from .conftest import logged_in

FORM = {
    "name": "Acme Support", "slug": "acme", "persona": "Be brief.", "greeting": "Hi!", "color": "#112233",
    "language": "en", "allowed_origins": "https://www.acme.test", "temperature": "0.4", "max_new_tokens": "300",
    "stop_sequences": "", "business_hours": "", "lead_form": "", "lead_retention_days": "365",
}  # fmt: skip


def _frame_ancestors(csp: str) -> list[str]:
    directive = next(part for part in csp.split(";") if part.strip().startswith("frame-ancestors"))
    return directive.split()[1:]


@pytest.mark.parametrize(
    "origin",
    ["*", "https://*.acme.test", "https://www.acme.test https://evil.test", "https://www.acme.test/shop",
     "https://user@www.acme.test", "javascript:alert(1)", "https://www.acme.test;script-src *", "www.acme.test",
     "https://www.acme.test:99999", "ftp://www.acme.test"],
)  # fmt: skip
def test_it_refuses_an_allowed_site_that_is_not_exactly_an_origin(admin, bot, origin):
    response = logged_in(admin).post(
        reverse("dashboard:bot-edit", args=["acme"]), {**FORM, "allowed_origins": f"https://ok.acme.test\n{origin}"}
    )
    assert response.status_code == 200
    assert b"is not an origin" in response.content or b"impossible port" in response.content
    bot.refresh_from_db()
    assert bot.allowed_origins == ["https://www.acme.test"]


def test_it_saves_allowed_sites_as_plain_origins(admin, bot):
    origins = "HTTPS://Shop.Acme.Test:443/\nhttp://localhost:8000\nhttps://xn--bcher-kva.example\nhttp://[::1]:8080"
    response = logged_in(admin).post(reverse("dashboard:bot-edit", args=["acme"]), {**FORM, "allowed_origins": origins})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.allowed_origins == [
        "https://shop.acme.test", "http://localhost:8000", "https://xn--bcher-kva.example", "http://[::1]:8080"
    ]  # fmt: skip


def test_the_chat_pages_csp_never_carries_a_stored_value_that_is_not_an_origin(bot):
    # Stored some other way (an old release, the admin, a script): the CSP takes only real origins.
    Bot.objects.filter(id=bot.id).update(
        allowed_origins=["https://www.acme.test", "* 'unsafe-inline'", "https://a.test https://evil.test", "*"]
    )
    response = Client().get(f"/chat/{bot.public_id}/", HTTP_HOST="localhost:8000")
    assert _frame_ancestors(response["Content-Security-Policy"]) == ["'self'", "https://www.acme.test"]
    bot.refresh_from_db()
    assert response["Content-Security-Policy"] == chat_page_csp(bot=bot, host="localhost:8000")


# --- a bot's own model endpoint and its key (item 4) ---


def test_the_endpoint_key_is_saved_but_never_shown_back_in_full_and_dropped_with_a_new_endpoint(admin, bot):
    client = logged_in(admin)
    url = reverse("dashboard:bot-edit", args=["acme"])
    endpoint = {"model_endpoint": "https://llm.acme.test", "model_api_key": "sk-acme-0123456789-wxyz"}
    assert client.post(url, {**FORM, **endpoint}).status_code == 302
    bot.refresh_from_db()
    assert bot.model_api_key == "sk-acme-0123456789-wxyz"
    page = client.get(url).content.decode()
    assert "sk-acme-0123456789" not in page and "…wxyz" in page
    # Saving without typing it keeps it; pointing the bot at another server drops it.
    client.post(url, {**FORM, "model_endpoint": "https://llm.acme.test"})
    bot.refresh_from_db()
    assert bot.model_api_key == "sk-acme-0123456789-wxyz"
    client.post(url, {**FORM, "model_endpoint": "https://llm.evil.example"})
    bot.refresh_from_db()
    assert (bot.model_endpoint, bot.model_api_key) == ("https://llm.evil.example", "")


def test_a_bot_file_never_carries_the_endpoint_key_and_cannot_set_one(admin, bot):
    Bot.objects.filter(id=bot.id).update(model_endpoint="https://llm.acme.test", model_api_key="sk-secret")
    bot.refresh_from_db()
    document = botfiles.bot_config_export(bot=bot)
    assert "sk-secret" not in json.dumps(document)
    document["bot"]["model_api_key"] = "sk-forged"
    assert 'Unknown setting "bot.model_api_key".' in botfiles.bot_config_plan(document=document).problems


@pytest.mark.parametrize(
    "setting, value, problem",
    [("allowed_origins", ["*"], "is not an origin"), ("model_endpoint", "not a url", "Enter a valid URL"),
     ("temperature", 7, "Between 0 and 2"), ("stop_sequences", ["a", "b", "c", "d", "e"], "At most 4"),
     ("lead_form", {"fields": "nope"}, "lead_form")],
)  # fmt: skip
def test_a_bot_file_is_checked_by_the_dashboards_own_form(bot, setting, value, problem):
    document = botfiles.bot_config_export(bot=bot)
    document["bot"][setting] = value
    with pytest.raises(botfiles.BotConfigError) as refused:
        botfiles.bot_config_import(document=document)
    assert any(problem in message for message in refused.value.problems), refused.value.problems
    assert Bot.objects.get(id=bot.id).allowed_origins == ["https://www.acme.test"]


def test_importing_a_bot_file_shows_what_changes_before_anything_is_applied(admin, bot):
    document = botfiles.bot_config_export(bot=bot)
    document["bot"]["model_endpoint"] = "https://llm.evil.example"
    document["bot"]["crm_webhook_url"] = "https://crm.evil.example/hook"
    upload = SimpleUploadedFile("acme.json", json.dumps(document).encode(), content_type="application/json")
    client = logged_in(admin)
    preview = client.post(reverse("dashboard:bot-import"), {"file": upload})
    page = preview.content.decode()
    assert preview.status_code == 200 and "Nothing has been saved yet" in page
    assert (
        "<td><code>model_endpoint</code></td><td><code></code></td><td><code>https://llm.evil.example</code></td>"
        in page
    )
    assert "<td><code>crm_webhook_url</code></td>" in page
    bot.refresh_from_db()
    assert (bot.model_endpoint, bot.crm_webhook_url) == ("", "")
    client.post(reverse("dashboard:bot-import"), {"document": preview.context["document"], "apply": "1"})
    bot.refresh_from_db()
    assert bot.model_endpoint == "https://llm.evil.example"


def test_importbot_prints_what_it_changes_and_can_only_show_it(bot, tmp_path):
    document = botfiles.bot_config_export(bot=bot)
    document["bot"]["model_endpoint"] = "https://llm.acme.test"
    path = tmp_path / "acme.json"
    path.write_text(json.dumps(document))
    out = io.StringIO()
    call_command("importbot", str(path), "--dry-run", stdout=out)
    assert "model_endpoint: '' -> 'https://llm.acme.test'" in out.getvalue() and "nothing was changed" in out.getvalue()
    assert Bot.objects.get(id=bot.id).model_endpoint == ""
    call_command("importbot", str(path), stdout=io.StringIO())
    assert Bot.objects.get(id=bot.id).model_endpoint == "https://llm.acme.test"
