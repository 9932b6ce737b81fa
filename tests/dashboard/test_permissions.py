"""Who sees which dashboard page: anonymous → login, not staff → 403, an agent only their bots, admins all."""

import pytest
from django.urls import reverse

from chatbot.models import Message

from .conftest import logged_in

# (name, kwargs builder, who besides admins may open it)
STAFF_PAGES = ["conversations", "quality", "analytics", "leads"]
ADMIN_PAGES = ["bots", "bot-new", "staff", "staff-new"]
ADMIN_BOT_PAGES = ["bot-edit", "bot-knowledge", "bot-export", "knowledge-progress"]


@pytest.fixture
def pages(bot, conversation):
    Message.objects.create(conversation=conversation, role="visitor", text="Hello")
    return {
        **{name: reverse(f"dashboard:{name}") for name in STAFF_PAGES + ADMIN_PAGES},
        **{name: reverse(f"dashboard:{name}", args=[bot.slug]) for name in ADMIN_BOT_PAGES},
        "transcript": reverse("dashboard:transcript", args=[conversation.id]),
        # The leads pages are chatbot.leads_views' (routed under /dashboard/), guarded by our permissions.
        "bot-leads": reverse("leads-list", args=[bot.slug]),
    }


ALL_PAGES = [*STAFF_PAGES, *ADMIN_PAGES, *ADMIN_BOT_PAGES, "transcript", "bot-leads"]


@pytest.mark.parametrize("page", ALL_PAGES)
def test_it_sends_anonymous_visitors_to_the_login_page(client, pages, page):
    response = client.get(pages[page])
    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login/?next=")


@pytest.mark.parametrize("page", ALL_PAGES)
def test_it_refuses_users_who_are_not_staff(outsider, pages, page):
    assert logged_in(outsider).get(pages[page]).status_code == 403


@pytest.mark.parametrize("page", ALL_PAGES)
@pytest.mark.parametrize("who", ["admin", "superuser"])
def test_administrators_open_every_page(request, pages, page, who):
    user = request.getfixturevalue(who)
    assert logged_in(user).get(pages[page]).status_code == 200


@pytest.mark.parametrize("page", [*STAFF_PAGES, "transcript"])
def test_an_agent_opens_the_pages_of_their_bots(agent, pages, page):
    assert logged_in(agent).get(pages[page]).status_code == 200


@pytest.mark.parametrize("page", [*ADMIN_PAGES, *ADMIN_BOT_PAGES])
def test_an_agent_cannot_manage_bots_or_staff(agent, pages, page):
    assert logged_in(agent).get(pages[page]).status_code == 403


@pytest.mark.parametrize("page", ["transcript", "bot-leads"])
def test_an_agent_of_another_bot_does_not_get_this_bots_pages(other_agent, pages, page):
    assert logged_in(other_agent).get(pages[page]).status_code in (403, 404)


def test_an_agent_of_another_bot_does_not_see_its_conversations_in_the_list(other_agent, agent, conversation):
    Message.objects.create(conversation=conversation, role="visitor", text="Where is my parcel?")
    assert b"Where is my parcel?" not in logged_in(other_agent).get(reverse("dashboard:conversations")).content
    assert b"Where is my parcel?" in logged_in(agent).get(reverse("dashboard:conversations")).content


def test_only_agents_allowed_to_see_leads_see_them(agent, agent_with_leads, bot, pages):
    assert logged_in(agent).get(pages["bot-leads"]).status_code == 403
    assert logged_in(agent_with_leads).get(pages["bot-leads"]).status_code == 200


@pytest.mark.parametrize("action", ["take-over", "hand-back", "staff-message"])
def test_an_agent_of_another_bot_cannot_act_on_its_conversations(other_agent, conversation, action):
    response = logged_in(other_agent).post(reverse(f"dashboard:{action}", args=[conversation.id]), {"text": "hi"})
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.taken_over_by is None
    assert not conversation.messages.filter(role="staff").exists()


def test_the_login_page_logs_staff_in(client, agent):
    response = client.post(reverse("dashboard:login"), {"username": "alan", "password": "correct-horse-battery"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200
