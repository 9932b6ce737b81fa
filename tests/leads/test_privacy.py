"""Privacy: a visitor's data deleted in one action (service, command), and leads purged after the bot's retention."""

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from chatbot.leads.capture import lead_capture
from chatbot.models import Conversation, Lead, LeadDelivery, Message
from chatbot.privacy.services import leads_purge_expired, visitor_data_delete

from .conftest import GOOD, lead_bot_create, visit


def visitor(bot, visitor_id: str, email: str | None, *, messages: int = 2) -> Conversation:
    conversation = visit(bot, visitor_id=visitor_id)
    for n in range(messages):
        Message.objects.create(conversation=conversation, role="visitor", text=f"hello {n}")
    if email:
        lead_capture(conversation=conversation, fields={**GOOD, "email": email})
    return conversation


def test_it_deletes_a_visitors_leads_conversations_and_messages_by_email(lead_bot):
    ada = visitor(lead_bot, "ada-visitor", "ada@example.com")
    # An earlier conversation of the same visitor, without a lead.
    Conversation.objects.create(bot=lead_bot, visitor_id="ada-visitor")
    bob = visitor(lead_bot, "bob-visitor", "bob@example.com")
    other_bot = lead_bot_create(slug="other")
    elsewhere = visitor(other_bot, "ada-visitor", "ada@example.com")
    assert LeadDelivery.objects.filter(lead__email="ada@example.com").exists()

    deleted = visitor_data_delete(bot=lead_bot, email="ADA@example.com")
    assert (deleted.leads, deleted.conversations, deleted.messages) == (1, 2, 2)
    assert not Conversation.objects.filter(bot=lead_bot, visitor_id="ada-visitor").exists()
    assert not Message.objects.filter(conversation_id=ada.id).exists()
    assert not Lead.objects.filter(bot=lead_bot, email="ada@example.com").exists()
    assert not LeadDelivery.objects.filter(lead__bot=lead_bot, lead__email="ada@example.com").exists()
    # Other visitors and other bots keep theirs.
    assert Lead.objects.filter(bot=lead_bot, email="bob@example.com").exists()
    assert Message.objects.filter(conversation=bob).count() == 2
    assert Lead.objects.filter(bot=other_bot).exists()
    assert Conversation.objects.filter(pk=elsewhere.pk).exists()


def test_it_deletes_by_visitor_id_including_a_lead_left_with_another_email(lead_bot):
    visitor(lead_bot, "v1", "first@example.com")
    visitor(lead_bot, "v2", "other@example.com")
    deleted = visitor_data_delete(bot=lead_bot, visitor_id="v1")
    assert (deleted.leads, deleted.conversations, deleted.messages) == (1, 1, 2)
    assert list(Lead.objects.values_list("email", flat=True)) == ["other@example.com"]


def test_it_needs_an_email_or_a_visitor_id(lead_bot):
    with pytest.raises(ValueError):
        visitor_data_delete(bot=lead_bot)


def test_the_deletevisitor_command(lead_bot):
    visitor(lead_bot, "v1", "ada@example.com")
    out = io.StringIO()
    call_command("deletevisitor", "--bot", "acme", "--email", "ada@example.com", stdout=out)
    assert "Deleted 1 lead(s), 1 conversation(s) and 2 message(s) of ada@example.com with acme." in out.getvalue()
    assert not Conversation.objects.exists()
    with pytest.raises(CommandError):
        call_command("deletevisitor", "--bot", "nope", "--email", "ada@example.com")
    with pytest.raises(CommandError):
        call_command("deletevisitor", "--bot", "acme")


def test_leads_older_than_the_bots_retention_are_purged(db):
    short = lead_bot_create(slug="short", lead_retention_days=30)
    long = lead_bot_create(slug="long")  # the default: a year
    now = timezone.now()
    for bot in (short, long):
        for n, age in enumerate((10, 40, 400)):
            lead = lead_capture(
                conversation=visit(bot, visitor_id=f"v{n}"), fields={**GOOD, "email": f"{n}@x.test"}
            ).lead
            Lead.objects.filter(pk=lead.pk).update(created_at=now - timedelta(days=age))
    assert leads_purge_expired(now=now) == 3
    assert sorted(Lead.objects.filter(bot=short).values_list("email", flat=True)) == ["0@x.test"]
    assert sorted(Lead.objects.filter(bot=long).values_list("email", flat=True)) == ["0@x.test", "1@x.test"]
    # Conversations are not leads: they stay.
    assert Conversation.objects.filter(bot=short).count() == 3
    assert leads_purge_expired(now=now) == 0


def test_beat_runs_the_purge_and_the_resending():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"chatbot.leads_tasks.leads_purge_expired", "chatbot.leads_tasks.lead_deliveries_resend_due"} <= tasks
    from chatbot.celery import app

    app.loader.import_default_modules()
    assert {"chatbot.leads_tasks.leads_purge_expired", "chatbot.leads_tasks.lead_deliveries_resend_due"} <= set(
        app.tasks
    )
