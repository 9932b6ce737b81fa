"""Capturing a lead: stored with where the visitor came from and their consent; a second submission of the same
email within a day updates that lead."""

from datetime import timedelta

from django.utils import timezone

from chatbot.leads.capture import lead_capture, utm_parse
from chatbot.models import Lead, LeadDelivery

from .conftest import CONSENT, GOOD, PAGE_URL, lead_bot_create, visit


def test_it_stores_the_lead_with_its_conversation_page_referrer_campaign_and_consent(lead_bot):
    conversation = visit(lead_bot)
    before = timezone.now()
    result = lead_capture(conversation=conversation, fields=GOOD)
    assert result.errors == {}
    assert result.created
    assert result.message == "Thanks! Our team will get back to you shortly."
    lead = Lead.objects.get()
    assert lead.bot == lead_bot
    assert lead.conversation == conversation
    assert (lead.email, lead.name) == ("ada@example.com", "Ada Lovelace")
    assert lead.data == GOOD
    assert lead.page_url == PAGE_URL
    assert lead.referrer == "https://search.test/?q=acme"
    assert lead.utm == {"source": "newsletter", "medium": "email", "campaign": "spring"}
    assert lead.consent_text == CONSENT
    assert before <= lead.consent_at <= timezone.now()


def test_it_stores_nothing_when_the_submission_is_invalid(lead_bot):
    result = lead_capture(conversation=visit(lead_bot), fields={**GOOD, "email": "ada@"})
    assert result.errors == {"email": "Enter a valid email address."}
    assert result.lead is None
    assert not Lead.objects.exists()


def test_it_updates_one_lead_when_the_same_email_comes_back_within_a_day(lead_bot):
    first = lead_capture(conversation=visit(lead_bot), fields=GOOD).lead
    later = timezone.now() + timedelta(hours=20)
    second = lead_capture(
        conversation=visit(lead_bot, visitor_id="visitor-2", page_url="https://www.acme.test/demo"),
        fields={"email": "ADA@example.com", "phone": "+44 20 7946 0000", "consent": True},
        now=later,
    )
    assert not second.created
    assert Lead.objects.count() == 1
    lead = Lead.objects.get()
    assert lead.id == first.id
    assert lead.data["phone"] == "+44 20 7946 0000"
    assert lead.data["company"] == "Analytical Engines"  # kept from the first submission
    assert lead.page_url == "https://www.acme.test/demo"
    assert lead.consent_at == later


def test_it_makes_a_new_lead_after_a_day_or_for_another_bot(lead_bot):
    lead_capture(conversation=visit(lead_bot), fields=GOOD)
    lead_capture(conversation=visit(lead_bot), fields=GOOD, now=timezone.now() + timedelta(hours=25))
    other = lead_bot_create(slug="other")
    lead_capture(conversation=visit(other), fields=GOOD)
    assert Lead.objects.filter(bot=lead_bot).count() == 2
    assert Lead.objects.filter(bot=other).count() == 1


def test_without_an_email_field_a_conversation_resubmitting_updates_its_lead(db):
    bot = lead_bot_create(lead_form={"fields": [{"type": "name", "required": True}, {"type": "phone"}]})
    conversation = visit(bot)
    lead_capture(conversation=conversation, fields={"name": "Ada"})
    lead_capture(conversation=conversation, fields={"name": "Ada L.", "phone": "+44 20 7946 0958"})
    lead = Lead.objects.get()
    assert lead.name == "Ada L."
    assert lead.data == {"name": "Ada L.", "phone": "+44 20 7946 0958"}
    assert lead.consent_at is None


def test_it_schedules_one_delivery_per_channel_and_an_update_reuses_a_pending_one(
    db, django_capture_on_commit_callbacks
):
    bot = lead_bot_create(notification_email="sales@acme.test", crm_webhook_url="https://crm.test/hook")
    with django_capture_on_commit_callbacks() as callbacks:
        lead = lead_capture(conversation=visit(bot), fields=GOOD).lead
    assert len(callbacks) == 1  # queues the deliveries once committed
    assert sorted(LeadDelivery.objects.values_list("channel", flat=True)) == ["email", "webhook"]
    assert all(d.lead_version == lead.updated_at for d in LeadDelivery.objects.all())
    updated = lead_capture(conversation=visit(bot), fields={**GOOD, "size": "51+"}).lead
    assert LeadDelivery.objects.count() == 2
    assert all(d.lead_version == updated.updated_at for d in LeadDelivery.objects.all())


def test_it_reads_utm_parameters_from_the_page_address():
    assert utm_parse("https://a.test/p?utm_source=google&utm_term=chat+bot&utm_=x&q=1") == {
        "source": "google",
        "term": "chat bot",
    }
    assert utm_parse("") == {}
    assert utm_parse("not a url") == {}
