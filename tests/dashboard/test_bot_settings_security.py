"""What an administrator can put in a bot's settings that reaches visitors or other servers: the sites allowed to
embed the chat (they end up in the chat page's Content-Security-Policy)."""

import pytest
from django.test import Client
from django.urls import reverse

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
