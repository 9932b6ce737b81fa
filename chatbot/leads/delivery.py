"""Delivering leads to the sales team: an email to the bot's notification address and a signed webhook to its CRM,
each retried with backoff until it arrives (or for GIVE_UP_AFTER), each attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from chatbot.models import Lead, LeadDelivery, LeadDeliveryAttempt
from knowledge.web import ForbiddenAddressError, address_checked_client

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Parley-Signature"
TIMESTAMP_HEADER = "X-Parley-Timestamp"
WEBHOOK_USER_AGENT = "Parley-Webhook/1"
WEBHOOK_TIMEOUT_S = 10.0
# While one worker sends a delivery, nobody else may: the claim holds the row this long (longer than a send).
CLAIM_LEASE = timedelta(minutes=2)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# A CRM that is down for a long weekend still gets every lead; after this a delivery is marked failed.
GIVE_UP_AFTER = timedelta(days=7)


def delivery_backoff(*, attempts: int) -> timedelta:
    """How long to wait after the `attempts`th failed attempt: 30 s, 1 min, 2 min, … at most an hour."""
    # The exponent is capped: a CRM down for a week means about 170 attempts, and 2**170 seconds overflows.
    return min(BACKOFF_FIRST * 2 ** min(max(attempts - 1, 0), 20), BACKOFF_MAX)


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the bot's webhook secret over `<timestamp>.<raw body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_signature_verify(
    *, secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (the reference for docs/leads.md): a fresh timestamp and a matching signature."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return age <= tolerance_s and hmac.compare_digest(expected, signature)


def lead_payload(*, lead: Lead, event: str, version: datetime) -> dict:
    return {
        "event": event,
        "lead": {
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
        },
    }


@dataclass
class _Sent:
    succeeded: bool
    response_code: int | None = None
    error: str = ""


def _send_webhook(*, delivery: LeadDelivery, payload: dict) -> _Sent:
    bot = delivery.lead.bot
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Parley-Event": payload["event"],
        # The same for every attempt of one version: a receiver can drop a repeat after a worker crash.
        "X-Parley-Delivery": f"{delivery.id}-{int(delivery.lead_version.timestamp() * 1_000_000)}",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=bot.crm_webhook_secret, timestamp=timestamp, body=body),
    }
    # The same address rules as web sources: a webhook must not reach into the network Parley runs in.
    client = address_checked_client(
        allow_private=settings.PARLEY_ALLOW_PRIVATE_URLS, timeout_s=WEBHOOK_TIMEOUT_S, user_agent=WEBHOOK_USER_AGENT
    )
    try:
        with client:
            response = client.post(bot.crm_webhook_url, content=body, headers=headers)
    except ForbiddenAddressError as error:
        return _Sent(False, error=f"Refused: {error}"[:500])
    except httpx.HTTPError as error:
        if isinstance(error.__cause__ or error.__context__, ForbiddenAddressError):
            return _Sent(False, error=f"Refused: {error.__cause__ or error.__context__}"[:500])
        return _Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    if 200 <= response.status_code < 300:
        return _Sent(True, response.status_code)
    # The status only: the body is whatever the target answered, shown to staff (an internal page, a secret).
    return _Sent(False, response.status_code, f"HTTP {response.status_code}")


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
    return "\n".join(lines)


def _send_email(*, delivery: LeadDelivery, payload: dict) -> _Sent:
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
        return _Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    return _Sent(True)


def _claim(delivery_id: int, now: datetime) -> tuple[LeadDelivery, dict] | None:
    """Take a due delivery for this worker: counted as an attempt and hidden from others for CLAIM_LEASE."""
    with transaction.atomic():
        delivery = (
            LeadDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead__bot")
            .filter(id=delivery_id, status=LeadDelivery.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM_LEASE
        delivery.save(update_fields=["attempts", "next_attempt_at"])
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
    with transaction.atomic():
        attempt = LeadDeliveryAttempt.objects.create(
            delivery_id=delivery.id, succeeded=sent.succeeded, response_code=sent.response_code, error=sent.error
        )
        LeadDeliveryAttempt.objects.filter(id=attempt.id).update(attempted_at=now)
        # Only if the lead was not updated meanwhile: otherwise the row now carries a newer version, due at once.
        same_version = LeadDelivery.objects.filter(id=delivery.id, lead_version=delivery.lead_version)
        if sent.succeeded:
            same_version.update(status=LeadDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
        elif now - delivery.created_at >= GIVE_UP_AFTER:
            same_version.update(status=LeadDelivery.Status.FAILED, next_attempt_at=None)
            logger.error("gave up delivering lead %s by %s", delivery.lead_id, delivery.channel)
        else:
            same_version.update(next_attempt_at=now + delivery_backoff(attempts=delivery.attempts))
    if not sent.succeeded:
        logger.warning("lead delivery %s (%s) failed: %s", delivery.id, delivery.channel, sent.error)
    return sent.succeeded


def lead_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        LeadDelivery.objects.filter(status=LeadDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )


def lead_deliveries_send_due(*, now: datetime | None = None) -> dict[int, bool | None]:
    """Attempt every due delivery here and now (what the beat task queues one by one); for tests and operators."""
    return {
        delivery_id: lead_delivery_attempt(delivery_id=delivery_id, now=now)
        for delivery_id in lead_deliveries_due(now=now)
    }
