"""Storing what a visitor submits through the lead form, with where they came from, and scheduling its delivery."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from django.db import connection, transaction
from django.utils import timezone

from chatbot.leads.delivery import lead_data
from chatbot.leads.form import form_text, language_of, lead_fields_validate, lead_form_for
from chatbot.leads.tasks import lead_deliver
from chatbot.models import Bot, Conversation, Lead, LeadDelivery
from chatbot.webhooks.events import webhook_event_emit

DEDUPE_WINDOW = timedelta(days=1)


@dataclass
class LeadCaptureResult:
    lead: Lead | None
    created: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""


def utm_parse(url: str) -> dict[str, str]:
    """The utm_* parameters of a page's address (`utm_source` → `source`)."""
    try:
        query = urlsplit(url or "").query
    except ValueError:
        return {}
    return {
        key[4:]: value[:200] for key, value in parse_qsl(query) if key.startswith("utm_") and len(key) > 4 and value
    }


def _lock_lead_key(bot: Bot, key: str) -> None:
    """Serialise captures of the same visitor for the same bot (two quick submits make one lead, not two)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [bot.id, zlib.crc32(key.encode()) - 2**31])


def _delivery_channels(bot: Bot) -> list[str]:
    channels = []
    if bot.notification_email:
        channels.append(LeadDelivery.Channel.EMAIL)
    if bot.crm_webhook_url:
        channels.append(LeadDelivery.Channel.WEBHOOK)
    return channels


def _deliveries_schedule(lead: Lead, *, now: datetime) -> list[int]:
    """One pending delivery per channel carrying the lead's current version: a delivery still pending (not yet
    delivered, perhaps waiting for a CRM that is down) takes the new version instead of a second one being made."""
    ids = []
    for channel in _delivery_channels(lead.bot):
        pending = (
            LeadDelivery.objects.select_for_update()
            .filter(lead=lead, channel=channel, status=LeadDelivery.Status.PENDING)
            .first()
        )
        if pending is None:
            pending = LeadDelivery.objects.create(
                lead=lead, channel=channel, lead_version=lead.updated_at, next_attempt_at=now
            )
        else:
            pending.lead_version, pending.next_attempt_at = lead.updated_at, now
            pending.save(update_fields=["lead_version", "next_attempt_at"])
        ids.append(pending.id)
    return ids


@transaction.atomic
def lead_capture(*, conversation: Conversation, fields: dict, now: datetime | None = None) -> LeadCaptureResult:
    """Validate and store what the visitor submitted, with where they came from; queue its delivery once
    committed. The same email for the same bot within a day updates that lead instead of making a second one
    (without an email: the same conversation within a day)."""
    now = now or timezone.now()
    form = lead_form_for(conversation=conversation)
    if form is None:
        return LeadCaptureResult(
            lead=None, errors={"__all__": form_text(language_of(conversation=conversation), "invalid")}
        )
    clean, errors = lead_fields_validate(form=form, submitted=fields if isinstance(fields, dict) else {})
    if errors:
        return LeadCaptureResult(lead=None, errors=errors)
    bot = conversation.bot
    by_type = {}
    for f in form.fields:
        if f.name in clean:
            by_type.setdefault(f.type, clean[f.name])
    email = by_type.get("email", "")
    _lock_lead_key(bot, email.lower() if email else f"conversation:{conversation.pk}")
    recent = Lead.objects.select_for_update().filter(bot=bot, created_at__gte=now - DEDUPE_WINDOW)
    lead = (recent.filter(email__iexact=email) if email else recent.filter(conversation=conversation, email="")).first()
    consent = next((f for f in form.fields if f.type == "consent" and clean.get(f.name)), None)
    created = lead is None
    if created:
        lead = Lead(bot=bot)
    lead.conversation = conversation
    lead.email = email or lead.email
    lead.name = by_type.get("name") or lead.name
    lead.data = {**(lead.data or {}), **clean}
    lead.page_url = conversation.page_url or lead.page_url
    lead.referrer = conversation.referrer or lead.referrer
    lead.utm = utm_parse(conversation.page_url) or lead.utm
    if consent is not None:
        lead.consent_text, lead.consent_at = consent.label, now
    lead.save()
    if created:  # auto_now_add ignores a given value; `now` may be a test's clock
        Lead.objects.filter(pk=lead.pk).update(created_at=now)
        lead.created_at = now
    ids = _deliveries_schedule(lead, now=now)
    # Subscriptions to lead events get the same lead as the bot's CRM webhook (which is their built-in one).
    webhook_event_emit(
        bot=bot,
        event="lead.created" if created else "lead.updated",
        data=lambda: {"lead": lead_data(lead=lead, version=lead.updated_at)},
    )
    Conversation.objects.filter(pk=conversation.pk).update(lead_form_reason="")
    transaction.on_commit(lambda: [lead_deliver.delay(delivery_id) for delivery_id in ids])
    return LeadCaptureResult(lead=lead, created=created, message=form.saved_message)
