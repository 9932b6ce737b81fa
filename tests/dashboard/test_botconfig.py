"""A bot's configuration as one JSON file: export, import, round trip, in the dashboard and with manage.py."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from chatbot.answers import approved as services
from chatbot.bots import botfiles as botconfig
from chatbot.models import Bot
from knowledge.models import Source
from knowledge.services import source_add_faq, source_add_url

from .conftest import logged_in


@pytest.fixture
def configured(bot):
    Bot.objects.filter(id=bot.id).update(
        persona="You are Acme's helpful assistant. Be brief.",
        color="#0f766e",
        adapter_id="acme-voice-v3",
        temperature=0.2,
        top_p=0.9,
        stop_sequences=["</s>"],
        seed=42,
        max_passages=12,
        strict_mode=True,
        business_hours={"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"]}},
        lead_form={"fields": [{"type": "email", "required": True}]},
        notification_email="sales@acme.test",
        crm_webhook_url="https://crm.acme.test/hook",
    )
    bot.refresh_from_db()
    services.approved_answer_add(bot=bot, question="Do you ship abroad?", answer="Yes, to the EU.", add_faq=False)
    source_add_url(knowledge_base=bot.knowledge_base, url="https://www.acme.test/help", resync_every_hours=24)
    source_add_faq(knowledge_base=bot.knowledge_base, question="Opening hours?", answer="9 to 6.")
    return bot


def test_the_export_holds_the_whole_configuration_and_no_secret(configured):
    document = botconfig.bot_config_export(bot=configured)
    assert (document["format"], document["version"]) == ("parley.bot", 1)
    assert document["bot"]["slug"] == "acme" and document["bot"]["adapter_id"] == "acme-voice-v3"
    assert document["bot"]["max_passages"] == 12
    assert document["bot"]["lead_form"] == {"fields": [{"type": "email", "required": True}]}
    assert document["approved_answers"] == [{"question": "Do you ship abroad?", "answer": "Yes, to the EU."}]
    assert {s["kind"] for s in document["sources"]} == {"url", "faq"}
    text = json.dumps(document)
    assert configured.crm_webhook_secret not in text and "crm_webhook_secret" not in text
    assert configured.public_id not in text


def test_a_round_trip_through_the_commands_recreates_the_bot(configured, tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "acme.json"
    call_command("exportbot", "acme", output=str(path))
    exported = json.loads(path.read_text())
    with django_capture_on_commit_callbacks(execute=False):
        call_command("importbot", str(path), slug="acme-copy")

    copy = Bot.objects.get(slug="acme-copy")
    again = botconfig.bot_config_export(bot=copy)
    assert {**again["bot"], "slug": "acme"} == exported["bot"]
    assert again["approved_answers"] == exported["approved_answers"]
    assert again["sources"] == exported["sources"]
    assert copy.crm_webhook_secret and copy.crm_webhook_secret != configured.crm_webhook_secret
    assert copy.approved_answers.get().embedding is not None
    assert Source.objects.filter(knowledge_base=copy.knowledge_base).count() == 2


def test_importing_again_updates_settings_and_adds_nothing_twice(configured, django_capture_on_commit_callbacks):
    document = botconfig.bot_config_export(bot=configured)
    document["bot"]["greeting"] = "Hello from the reviewed config!"
    with django_capture_on_commit_callbacks(execute=False):
        report = botconfig.bot_config_import(document=document)
    assert not report.created and report.sources_added == 0 and report.approved_answers_added == 0
    configured.refresh_from_db()
    assert configured.greeting == "Hello from the reviewed config!"
    assert configured.approved_answers.count() == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": "something.else"}, "Not a Parley bot configuration"),
        ({"version": 2}, "Unsupported version"),
        ({"bot": {"slug": "Not A Slug", "name": "X"}}, "slug"),
        ({"bot": {"slug": "x", "name": "X", "temperature": "hot"}}, "wrong type"),
        ({"bot": {"slug": "x", "name": "X", "crm_webhook_secret": "s"}}, "Unknown setting"),
        ({"bot": {"slug": "x", "name": "X", "conversation_retention_days": 0}}, "at least 1 day"),
        ({"bot": {"slug": "x", "name": "X", "max_passages": 21}}, "between 1 and 20"),
        ({"bot": {"slug": "x", "name": "X", "max_passages": 0}}, "between 1 and 20"),
    ],
)
def test_it_refuses_a_document_it_cannot_read(db, change, problem):
    document = {"format": "parley.bot", "version": 1, "bot": {"slug": "x", "name": "X"}, **change}
    with pytest.raises(botconfig.BotConfigError) as error:
        botconfig.bot_config_import(document=document)
    assert problem in str(error.value)
    assert not Bot.objects.filter(slug="x").exists()


def test_the_command_explains_a_bad_file(tmp_path, db):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "parley.bot", "version": 9}')
    with pytest.raises(CommandError, match="Unsupported version"):
        call_command("importbot", str(path))
    with pytest.raises(CommandError, match="no bot"):
        call_command("exportbot", "nope")


def test_export_and_import_in_the_dashboard(configured, admin, django_capture_on_commit_callbacks):
    client = logged_in(admin)
    response = client.get(reverse("dashboard:bot-export", args=["acme"]))
    assert response["Content-Disposition"] == 'attachment; filename="acme.parley-bot.json"'
    document = json.loads(response.content)
    document["bot"]["slug"] = "acme-two"
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("acme.json", json.dumps(document).encode(), content_type="application/json")
    # First what would change, nothing written; then, applied, the bot.
    preview = client.post(reverse("dashboard:bot-import"), {"file": upload})
    assert preview.status_code == 200 and b"acme-voice-v3" in preview.content
    assert not Bot.objects.filter(slug="acme-two").exists()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("dashboard:bot-import"), {"document": preview.context["document"], "apply": "1"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:bot-edit", args=["acme-two"])
    assert Bot.objects.get(slug="acme-two").adapter_id == "acme-voice-v3"


def test_createstaff_creates_an_agent_of_a_bot(bot, capsys):
    call_command(
        "createstaff", "joan", "--role", "agent", "--bot", "acme", "--display-name", "Joan", "--can-view-leads"
    )
    member = Bot.objects.get(slug="acme").staff_members.get()
    assert (member.user.username, member.role, member.display_name, member.can_view_leads) == (
        "joan", "agent", "Joan", True,
    )  # fmt: skip
    assert "Password: " in capsys.readouterr().out
    with pytest.raises(CommandError, match="nope"):
        call_command("createstaff", "kim", "--bot", "nope")
