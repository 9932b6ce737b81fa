"""Signing in to the dashboard: throttled per account and per address (django-axes), and what visitors learn of the
staff who answer them: their display name, never their login."""

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from chatbot.chat import staff as staff_services
from chatbot.chat.conversations import conversation_history
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Conversation

from .conftest import PASSWORD, chat_socket, receive_until

LOGIN = "/dashboard/login/"  # the admin's login goes through the same throttle (django-axes)


def _sign_in(username: str, password: str, *, ip: str) -> Client:
    client = Client(REMOTE_ADDR=ip)
    client.post(LOGIN, {"username": username, "password": password})
    return client


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_it_refuses_the_right_password_after_too_many_wrong_ones_for_the_account(admin, settings):
    for attempt in range(20):  # from many addresses: a botnet guessing one account
        _sign_in("ada", f"wrong-{attempt}", ip=f"203.0.113.{attempt + 1}")
    client = _sign_in("ada", PASSWORD, ip="198.51.100.7")
    assert not _signed_in(client)
    response = Client(REMOTE_ADDR="198.51.100.8").post(LOGIN, {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429 and b"Too many attempts" in response.content


@pytest.mark.django_db
def test_it_refuses_every_account_from_an_address_that_guessed_too_often(admin, agent, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):  # a different account each time
        _sign_in(f"user{attempt}", "guess", ip="203.0.113.99")
    assert not _signed_in(_sign_in("alan", PASSWORD, ip="203.0.113.99"))
    # Other addresses, and the accounts themselves, are not locked out by it.
    assert _signed_in(_sign_in("alan", PASSWORD, ip="203.0.113.100"))


@pytest.mark.django_db
def test_a_few_mistakes_do_not_lock_anyone_out(admin):
    for attempt in range(3):
        _sign_in("ada", f"wrong-{attempt}", ip="192.0.2.10")
    assert _signed_in(_sign_in("ada", PASSWORD, ip="192.0.2.10"))


# --- the names visitors see ---


@pytest.mark.django_db(transaction=True)
async def test_visitors_never_see_a_staff_members_login_live_or_after_a_reload(bot, conversation):
    # No display name, no first name: the widget's own "Support agent" is shown, not "leadagent".
    member = await database_sync_to_async(staff_member_save)(
        username="leadagent", role="agent", bots=[bot], password=PASSWORD
    )
    user = await database_sync_to_async(lambda: member.user)()
    visitor = chat_socket(bot)
    await visitor.connect(timeout=10)
    await visitor.send_json_to({"type": "hello"})
    ready = await receive_until(visitor, "ready", timeout=10)

    chat = await Conversation.objects.aget(id=ready["conversation_id"])
    await database_sync_to_async(staff_services.conversation_take_over)(conversation=chat, user=user)
    await database_sync_to_async(staff_services.staff_message_send)(
        conversation=chat, user=user, text="Hello, how can I help?"
    )
    joined = await receive_until(visitor, "staff_joined", timeout=10)
    message = await receive_until(visitor, "staff_message", timeout=10)
    assert "leadagent" not in (joined["name"], message["name"])
    await visitor.disconnect()

    reloaded = chat_socket(bot)
    await reloaded.connect(timeout=10)
    await reloaded.send_json_to({"type": "hello", "visitor_token": ready["visitor_token"]})
    history = (await receive_until(reloaded, "ready", timeout=10))["messages"]
    assert [m["staff_name"] for m in history if m["role"] == "staff"] == [None]
    assert "leadagent" not in str(history)
    await reloaded.disconnect()


@pytest.mark.django_db
def test_visitors_see_the_display_name_or_first_name(bot, conversation):
    member = staff_member_save(username="leadagent", role="agent", bots=[bot], display_name="Sam from Acme")
    staff_services.conversation_take_over(conversation=conversation, user=member.user)
    staff_services.staff_message_send(conversation=conversation, user=member.user, text="Hi")
    get_user_model().objects.filter(id=member.user.id).update(first_name="Samantha")
    assert [m["staff_name"] for m in conversation_history(conversation=conversation)] == ["Sam from Acme"]
    member.display_name = ""
    member.save()
    assert [m["staff_name"] for m in conversation_history(conversation=conversation)] == ["Samantha"]
