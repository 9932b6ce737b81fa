"""Privacy, for conversations: a retention period per bot (default: kept forever) purged by beat; a visitor's data
exported as JSON (an access request) from the transcript and by command; and deleted from the transcript."""

import io
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from chatbot.dashboard.services import staff_member_save
from chatbot.leads.capture import lead_capture
from chatbot.models import Conversation, ConversationInsight, ConversationNote, Lead, Message
from chatbot.privacy.export import visitor_data_export
from chatbot.privacy.services import conversations_purge_expired

from .conftest import CONSENT, GOOD, lead_bot_create, visit

PASSWORD = "correct-horse-battery"


def chat(bot, visitor_id: str, *, email: str | None = None, age_days: float = 0, new: bool = False) -> Conversation:
    conversation = (
        Conversation.objects.create(bot=bot, visitor_id=visitor_id) if new else visit(bot, visitor_id=visitor_id)
    )
    question = Message.objects.create(conversation=conversation, role="visitor", text=f"hello from {visitor_id}")
    Message.objects.create(
        conversation=conversation,
        role="bot",
        in_reply_to=question,
        text="Hi! How can I help?",
        prompt=[{"role": "system", "content": "INTERNAL PROMPT"}],
        corrected_text="INTERNAL CORRECTION",
    )
    ConversationNote.objects.create(conversation=conversation, text="INTERNAL NOTE about this visitor")
    if email:
        lead_capture(conversation=conversation, fields={**GOOD, "email": email})
    if age_days:
        Conversation.objects.filter(id=conversation.id).update(
            last_message_at=timezone.now() - timedelta(days=age_days)
        )
    return conversation


# --- retention ---


def test_conversations_past_the_bots_retention_are_purged_and_the_default_keeps_them(db):
    short = lead_bot_create(slug="short", conversation_retention_days=30)
    forever = lead_bot_create(slug="forever")
    assert forever.conversation_retention_days is None
    for bot in (short, forever):
        for age in (10, 40, 4000):
            chat(bot, f"{bot.slug}-{age}", age_days=age)
    lead_conversation = chat(short, "with-lead", email="ada@example.com", age_days=100)

    assert conversations_purge_expired(batch_size=1) == 3

    assert list(Conversation.objects.filter(bot=short).values_list("visitor_id", flat=True)) == ["short-10"]
    assert Conversation.objects.filter(bot=forever).count() == 3
    assert not Message.objects.filter(conversation__bot=short).exclude(conversation__visitor_id="short-10").exists()
    assert ConversationNote.objects.filter(conversation__bot=short).count() == 1
    # A lead has its own retention: it stays, without its conversation.
    lead = Lead.objects.get(email="ada@example.com")
    assert lead.conversation_id is None and not Conversation.objects.filter(id=lead_conversation.id).exists()
    assert conversations_purge_expired() == 0


def test_beat_purges_conversations_with_a_task_registered_by_name():
    entry = next(
        entry
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"].endswith("conversations_purge_expired")
    )
    assert entry["task"] == "chatbot.privacy.tasks.conversations_purge_expired"
    from chatbot.celery import app

    app.loader.import_default_modules()
    assert "chatbot.privacy.tasks.conversations_purge_expired" in app.tasks


def test_the_bot_form_sets_the_retention_and_refuses_zero(db):
    from chatbot.dashboard.forms import BotForm

    bot = lead_bot_create()
    data = {
        "name": "Acme", "slug": "acme", "greeting": "Hi", "color": "#112233", "language": "en",
        "temperature": "0.3", "max_new_tokens": "300", "lead_retention_days": "365",
    }  # fmt: skip
    assert BotForm({**data, "conversation_retention_days": "90"}, instance=bot).is_valid()
    assert not BotForm({**data, "conversation_retention_days": "0"}, instance=bot).is_valid()
    form = BotForm({**data, "conversation_retention_days": ""}, instance=bot)
    assert form.is_valid() and form.cleaned_data["conversation_retention_days"] is None


# --- the access request: one visitor's data as JSON ---


def test_the_export_holds_the_visitors_conversations_messages_and_leads_and_nothing_internal(lead_bot):
    first = chat(lead_bot, "v1", email="ada@example.com")
    second = chat(lead_bot, "v1", new=True)  # the same visitor, another day
    Conversation.objects.filter(id=second.id).update(last_message_at=timezone.now() + timedelta(seconds=1))
    ConversationInsight.objects.create(
        conversation=first, summary="Asked for a quote.", sentiment="positive", analysed_until=timezone.now()
    )
    chat(lead_bot, "v2", email="bob@example.com")
    other_bot = lead_bot_create(slug="other")
    chat(other_bot, "v1", email="ada@example.com")

    document = visitor_data_export(bot=lead_bot, email="ADA@example.com")

    assert document["format"] == "parley.visitor-data" and document["bot"]["slug"] == "acme"
    assert document["visitor_ids"] == ["v1"]
    assert {c["id"] for c in document["conversations"]} == {first.id, second.id}
    conversation = next(c for c in document["conversations"] if c["id"] == first.id)
    assert conversation["summary"] == "Asked for a quote." and conversation["sentiment"] == "positive"
    assert [(m["from"], m["text"]) for m in conversation["messages"]] == [
        ("visitor", "hello from v1"), ("bot", "Hi! How can I help?"),
    ]  # fmt: skip
    assert conversation["user_agent"] == "" and conversation["page_url"].startswith("https://www.acme.test/")
    [lead] = document["leads"]
    assert (lead["email"], lead["fields"]["company"], lead["consent_text"]) == (
        "ada@example.com", "Analytical Engines", CONSENT,
    )  # fmt: skip
    text = json.dumps(document)
    assert "INTERNAL" not in text and "bob@example.com" not in text


def test_the_exportvisitor_command(lead_bot, tmp_path):
    chat(lead_bot, "v1", email="ada@example.com")
    out = tmp_path / "ada.json"
    err = io.StringIO()
    call_command("exportvisitor", "--bot", "acme", "--visitor-id", "v1", "--out", str(out), stderr=err)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["leads"][0]["email"] == "ada@example.com"
    assert "1 conversation(s) and 1 lead(s) of v1 exported for acme" in err.getvalue()
    with pytest.raises(CommandError):
        call_command("exportvisitor", "--bot", "acme")
    with pytest.raises(CommandError):
        call_command("exportvisitor", "--bot", "nope", "--email", "ada@example.com")


# --- from the transcript ---


@pytest.fixture
def staff(lead_bot):
    from django.test import Client

    def client_for(username: str, role: str, **fields) -> Client:
        user = staff_member_save(username=username, role=role, bots=[lead_bot], password=PASSWORD, **fields).user
        client = Client()
        client.force_login(user)
        return client

    return client_for


def test_the_transcript_shows_the_visitor_id_and_exports_their_data(lead_bot, staff):
    conversation = chat(lead_bot, "visitor-ada-42", email="ada@example.com")
    admin = staff("ada", "admin")
    page = admin.get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    assert "visitor-ada-42" in page and "Delete this visitor's data" in page

    response = admin.get(reverse("dashboard:visitor-export", args=[conversation.id]))

    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == 'attachment; filename="visitor-acme-visitor-ada-42.json"'
    assert json.loads(response.content)["leads"][0]["email"] == "ada@example.com"


def test_only_who_may_see_leads_exports_and_only_administrators_delete(lead_bot, staff):
    conversation = chat(lead_bot, "v1", email="ada@example.com")
    agent = staff("alan", "agent")
    page = agent.get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    assert "v1" in page and 'id="visitor-export"' not in page and 'id="visitor-delete"' not in page
    assert agent.get(reverse("dashboard:visitor-export", args=[conversation.id])).status_code == 403
    assert (
        staff("grace", "agent", can_view_leads=True)
        .get(reverse("dashboard:visitor-export", args=[conversation.id]))
        .status_code
        == 200
    )
    assert agent.post(reverse("dashboard:visitor-delete", args=[conversation.id]), {"confirm": "1"}).status_code == 403
    assert Conversation.objects.filter(id=conversation.id).exists()


def test_an_administrator_deletes_the_visitors_data_from_the_transcript(lead_bot, staff):
    conversation = chat(lead_bot, "v1", email="ada@example.com")
    later = chat(lead_bot, "v1", new=True)
    keep = chat(lead_bot, "v2")
    admin = staff("ada", "admin")

    unconfirmed = admin.post(reverse("dashboard:visitor-delete", args=[conversation.id]), follow=True)
    assert "nothing was deleted" in unconfirmed.content.decode()
    assert Conversation.objects.filter(id=conversation.id).exists()

    response = admin.post(reverse("dashboard:visitor-delete", args=[conversation.id]), {"confirm": "1"}, follow=True)

    assert "Deleted 1 lead(s), 2 conversation(s) and 4 message(s) of visitor v1." in response.content.decode()
    assert not Conversation.objects.filter(id__in=[conversation.id, later.id]).exists()
    assert not Lead.objects.exists() and not ConversationNote.objects.filter(conversation__visitor_id="v1").exists()
    assert Conversation.objects.filter(id=keep.id).exists()
