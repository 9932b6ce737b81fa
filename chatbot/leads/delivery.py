"""Delivering leads to the sales team: an email to the bot's notification address and a signed webhook to its CRM,
each retried with backoff until it arrives (or for GIVE_UP_AFTER), each attempt recorded."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import timezone

from chatbot.models import Lead, LeadDelivery, LeadDeliveryAttempt
from chatbot.webhooks.delivery import (  # noqa: F401  (re-exported: receivers and tests read them here)
    BACKOFF_FIRST,
    BACKOFF_MAX,
    CLAIM_LEASE,
    GIVE_UP_AFTER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_TIMEOUT_S,
    Sent,
    deliveries_due,
    delivery_backoff,
    delivery_claim,
    delivery_result_record,
    webhook_post,
    webhook_signature,
    webhook_signature_verify,
)

logger = logging.getLogger(__name__)
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


def lead_data(*, lead: Lead, version: datetime) -> dict:
    """The lead as webhooks carry it (the CRM webhook and `lead.*` event subscriptions alike)."""
    return {
        "id": lead.id,
        "version": version.isoformat(),
        "bot": lead.bot.slug,
        "email": lead.email,
        "name": lead.name,
        "fields": lead.data,
        "page_url": lead.page_url,
        "referrer": lead.referrer,
        "utm": lead.utm,
        "consent": {"text": lead.consent_text, "at": lead.consent_at.isoformat() if lead.consent_at else None},
        "conversation_id": lead.conversation_id,
        "created_at": lead.created_at.isoformat(),
        "updated_at": lead.updated_at.isoformat(),
    }


def lead_payload(*, lead: Lead, event: str, version: datetime) -> dict:
    return {"event": event, "lead": lead_data(lead=lead, version=version)}


def _send_webhook(*, delivery: LeadDelivery, payload: dict) -> Sent:
    bot = delivery.lead.bot
    # The same address rules as web sources (PARLEY_ALLOW_PRIVATE_URLS for an intranet CRM): a webhook must not reach
    # into the network Parley runs in.
    return webhook_post(
        url=bot.crm_webhook_url,
        secret=bot.crm_webhook_secret,
        event=payload["event"],
        # The same for every attempt of one version: a receiver can drop a repeat after a worker crash.
        delivery_key=f"{delivery.id}-{int(delivery.lead_version.timestamp() * 1_000_000)}",
        payload=payload,
        allow_private=settings.PARLEY_ALLOW_PRIVATE_URLS,
    )


def _email_body(lead: Lead, event: str) -> str:
    lines = [f"{'Updated' if event == 'lead.updated' else 'New'} lead from the chat of {lead.bot.name}.", ""]
    lines += [f"{key}: {value}" for key, value in lead.data.items()]
    lines += ["", f"Page: {lead.page_url or '-'}", f"Referrer: {lead.referrer or '-'}"]
    if lead.utm:
        lines.append("Campaign: " + ", ".join(f"utm_{key}={value}" for key, value in sorted(lead.utm.items())))
    if lead.consent_at:
        lines.append(f"Consent ({lead.consent_at:%Y-%m-%d %H:%M %Z}): {lead.consent_text}")
    path = reverse("lead-detail", kwargs={"slug": lead.bot.slug, "lead_id": lead.id})
    lines += ["", f"In Parley: {settings.SITE_URL}{path}"]
    if lead.conversation_id:
        conversation = reverse("dashboard:transcript", args=[lead.conversation_id])
        lines.append(f"The conversation: {settings.SITE_URL}{conversation}")
    return "\n".join(lines)


def _send_email(*, delivery: LeadDelivery, payload: dict) -> Sent:
    lead = delivery.lead
    subject = f"[{lead.bot.name}] {'Updated' if payload['event'] == 'lead.updated' else 'New'} lead: "
    subject += lead.name or lead.email or f"#{lead.id}"
    message = EmailMessage(
        subject=subject,
        body=_email_body(lead, payload["event"]),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[lead.bot.notification_email],
        reply_to=[lead.email] if lead.email else None,
    )
    try:
        message.send()
    except Exception as error:  # SMTP and backend errors have no common base class
        return Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    return Sent(True, to_console=settings.EMAIL_BACKEND == CONSOLE_EMAIL_BACKEND)


def _claim(delivery_id: int, now: datetime) -> tuple[LeadDelivery, dict] | None:
    """Take a due delivery for this worker (chatbot.webhooks.delivery.delivery_claim), with what it carries."""
    delivery = delivery_claim(
        queryset=LeadDelivery.objects.select_related("lead__bot"), delivery_id=delivery_id, now=now
    )
    if delivery is None:
        return None
    earlier = LeadDelivery.objects.filter(
        lead_id=delivery.lead_id, channel=delivery.channel, status=LeadDelivery.Status.DELIVERED
    ).exists()
    event = "lead.updated" if earlier else "lead.created"
    return delivery, lead_payload(lead=delivery.lead, event=event, version=delivery.lead_version)


def lead_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> bool | None:
    """Send one delivery if it is due and nobody else is sending it; record the attempt. Returns True (delivered),
    False (failed, retried later with backoff) or None (not due, already delivered, or taken by another worker)."""
    now = now or timezone.now()
    claimed = _claim(delivery_id, now)
    if claimed is None:
        return None
    delivery, payload = claimed
    send = _send_webhook if delivery.channel == LeadDelivery.Channel.WEBHOOK else _send_email
    sent = send(delivery=delivery, payload=payload)
    delivery_result_record(
        delivery=delivery,
        attempt_model=LeadDeliveryAttempt,
        sent=sent,
        now=now,
        # Only if the lead was not updated meanwhile: otherwise the row now carries a newer version, due at once.
        same_version=LeadDelivery.objects.filter(id=delivery.id, lead_version=delivery.lead_version),
        what=f"lead {delivery.lead_id} by {delivery.channel} (delivery {delivery.id})",
    )
    return sent.succeeded


def lead_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    return deliveries_due(queryset=LeadDelivery.objects.all(), now=now or timezone.now(), limit=limit)


def lead_deliveries_send_due(*, now: datetime | None = None) -> dict[int, bool | None]:
    """Attempt every due delivery here and now (what the beat task queues one by one); for tests and operators."""
    return {
        delivery_id: lead_delivery_attempt(delivery_id=delivery_id, now=now)
        for delivery_id in lead_deliveries_due(now=now)
    }
