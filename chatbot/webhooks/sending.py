"""Sending event deliveries to their subscriptions, through the generic delivery of chatbot.webhooks.delivery."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from chatbot.models import WebhookDelivery, WebhookDeliveryAttempt
from chatbot.webhooks.delivery import deliveries_due, delivery_claim, delivery_result_record, webhook_post


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> bool | None:
    """Send one event delivery if it is due and nobody else is sending it; record the attempt. True (delivered),
    False (failed: retried later with backoff) or None (not due, done, inactive, or taken by another worker)."""
    now = now or timezone.now()
    delivery = delivery_claim(
        queryset=WebhookDelivery.objects.select_related("subscription").filter(subscription__active=True),
        delivery_id=delivery_id,
        now=now,
    )
    if delivery is None:
        return None
    subscription = delivery.subscription
    sent = webhook_post(
        url=subscription.url,
        secret=subscription.secret,
        event=delivery.event,
        delivery_key=f"evt-{delivery.id}",
        payload=delivery.payload,
        allow_private=subscription.allow_private_addresses or settings.PARLEY_ALLOW_PRIVATE_URLS,
    )
    delivery_result_record(
        delivery=delivery,
        attempt_model=WebhookDeliveryAttempt,
        sent=sent,
        now=now,
        same_version=WebhookDelivery.objects.filter(id=delivery.id),
        what=f"{delivery.event} to {subscription.url} (delivery {delivery.id})",
    )
    return sent.succeeded


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    return deliveries_due(
        queryset=WebhookDelivery.objects.filter(subscription__active=True), now=now or timezone.now(), limit=limit
    )


def webhook_deliveries_send_due(*, now: datetime | None = None) -> dict[int, bool | None]:
    """Attempt every due event delivery here and now (what the beat queues one by one); for tests and operators."""
    return {
        delivery_id: webhook_delivery_attempt(delivery_id=delivery_id, now=now)
        for delivery_id in webhook_deliveries_due(now=now)
    }
