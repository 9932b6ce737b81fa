"""The dashboard's Integrations page (API keys, event webhooks) and the secrets on a bot's page: administrators
only, a key shown once, revoking, subscriptions with address checks, rotating secrets."""

import hashlib

import pytest

from chatbot.apikeys.services import api_key_authenticate
from chatbot.models import ApiKey, WebhookSubscription
from tests.leads.conftest import CRM

from .conftest import logged_in


def test_only_administrators_see_the_integrations_page(admin, agent):
    assert logged_in(admin).get("/dashboard/integrations/").status_code == 200
    assert logged_in(agent).get("/dashboard/integrations/").status_code == 403
    assert logged_in(agent).post("/dashboard/integrations/keys/", {"name": "x"}).status_code == 403


def test_an_administrator_creates_a_key_sees_it_once_and_revokes_it(admin, bot, other_bot):
    client = logged_in(admin)
    response = client.post("/dashboard/integrations/keys/", {"name": "CRM sync", "bots": [bot.id], "read_only": "on"})
    assert response.status_code == 200
    key = response.context["new_key"]
    assert key.startswith("pk_") and key in response.content.decode()
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.read_only, api_key.created_by) == ("CRM sync", True, admin)
    assert list(api_key.bots.all()) == [bot]
    assert api_key.key_hash == hashlib.sha256(key.encode()).hexdigest()
    again = client.get("/dashboard/integrations/").content.decode()
    assert key not in again and f"pk_{api_key.prefix}…" in again

    client.post(f"/dashboard/integrations/keys/{api_key.id}/revoke/")
    assert api_key_authenticate(key=key) is None
    assert "revoked" in client.get("/dashboard/integrations/").content.decode()


def test_a_key_needs_a_name(admin):
    response = logged_in(admin).post("/dashboard/integrations/keys/", {"name": ""})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_a_subscription_to_an_internal_address_is_refused_unless_allowed(admin, bot):
    client = logged_in(admin)
    receiver = CRM().start()
    try:
        fields = {"bot": bot.id, "url": receiver.url, "events": ["handoff.requested", "lead.created"]}
        refused = client.post("/dashboard/integrations/webhooks/", fields)
        assert refused.status_code == 400
        assert "private or internal address" in refused.content.decode()
        assert not WebhookSubscription.objects.exists()

        client.post("/dashboard/integrations/webhooks/", {**fields, "allow_private_addresses": "on"})
        subscription = WebhookSubscription.objects.get()
        assert (subscription.bot, subscription.events) == (bot, ["handoff.requested", "lead.created"])
        page = client.get("/dashboard/integrations/").content.decode()
        assert subscription.secret in page and receiver.url in page
        client.post(f"/dashboard/integrations/webhooks/{subscription.id}/delete/")
        assert not WebhookSubscription.objects.exists()
    finally:
        receiver.stop()


def test_the_bots_lead_webhook_is_listed_with_the_subscriptions(admin, bot):
    bot.crm_webhook_url = "https://crm.acme.test/hooks"
    bot.save(update_fields=["crm_webhook_url"])
    page = logged_in(admin).get("/dashboard/integrations/").content.decode()
    assert "https://crm.acme.test/hooks" in page and "The bot's lead webhook" in page


@pytest.mark.parametrize(("which", "field"), [("webhook", "crm_webhook_secret"), ("identity", "identity_secret")])
def test_a_bots_page_shows_its_secrets_and_rotates_them(admin, bot, which, field):
    client = logged_in(admin)
    old = getattr(bot, field)
    assert old in client.get(f"/dashboard/bots/{bot.slug}/").content.decode()
    response = client.post(f"/dashboard/bots/{bot.slug}/secrets/{which}/rotate/")
    assert response.status_code == 302
    bot.refresh_from_db()
    assert getattr(bot, field) != old and len(getattr(bot, field)) >= 40
    assert getattr(bot, field) in client.get(f"/dashboard/bots/{bot.slug}/").content.decode()


def test_agents_cannot_rotate_a_bots_secrets(agent, bot):
    old = bot.identity_secret
    assert logged_in(agent).post(f"/dashboard/bots/{bot.slug}/secrets/identity/rotate/").status_code == 403
    bot.refresh_from_db()
    assert bot.identity_secret == old


def test_a_verified_visitor_shows_with_name_and_email_in_the_transcript(admin, conversation):
    conversation.visitor_verified, conversation.visitor_name = True, "Ada Lovelace"
    conversation.visitor_email = "ada@example.com"
    conversation.save(update_fields=["visitor_verified", "visitor_name", "visitor_email"])
    page = logged_in(admin).get(f"/dashboard/conversations/{conversation.id}/").content.decode()
    assert "Ada Lovelace &lt;ada@example.com&gt;" in page and "verified" in page
