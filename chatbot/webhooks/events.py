"""The events Parley emits to webhook subscriptions (docs/api.md, "Event webhooks"): each one becomes a delivery per
subscribed URL, in the transaction that made it happen, sent by a worker once committed."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from chatbot.models import WEBHOOK_EVENTS, Bot, Conversation, Message, WebhookDelivery, WebhookSubscription
from chatbot.webhooks.tasks import webhook_deliver


def webhook_event_emit(*, bot: Bot, event: str, data: dict | Callable[[], dict]) -> list[int]:
    """Queue `event` (with `data` beside `event`, `bot` and `occurred_at`) for every active subscription of the bot
    or of all bots that asked for it. Returns the deliveries' ids. One query when nobody subscribed (`data` may be
    a function, then called only when somebody did)."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if event not in _events_subscribed(bot_id=bot.id):
        return []
    subscriptions = list(
        WebhookSubscription.objects.filter(active=True, events__contains=[event])
        .filter(Q(bot_id=bot.id) | Q(bot__isnull=True))
        .only("id")
    )
    if not subscriptions:
        return []
    now = timezone.now()
    payload = {"event": event, "bot": bot.slug, "occurred_at": now.isoformat(), **(data() if callable(data) else data)}
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(subscription_id=subscription.id, event=event, payload=payload, next_attempt_at=now)
        for subscription in subscriptions
    )
    ids = [delivery.id for delivery in deliveries]
    transaction.on_commit(lambda: [webhook_deliver.delay(delivery_id) for delivery_id in ids])
    return ids


# Per process: the events somebody subscribed to, by bot, for WEBHOOK_SUBSCRIPTIONS_CACHE_S. Every visitor message
# asks; nearly always nobody listens, and the answer is the same for seconds at a time. Changes made in this
# process (`subscriptions_forget`) count at once, others within that time.
_subscribed: dict[int, tuple[float, frozenset[str]]] = {}


def _events_subscribed(*, bot_id: int) -> frozenset[str]:
    ttl = settings.WEBHOOK_SUBSCRIPTIONS_CACHE_S
    now = time.monotonic()
    cached = _subscribed.get(bot_id)
    if ttl > 0 and cached is not None and cached[0] > now:
        return cached[1]
    rows = WebhookSubscription.objects.filter(active=True).filter(Q(bot_id=bot_id) | Q(bot__isnull=True))
    events = frozenset(event for row in rows.values_list("events", flat=True) for event in row)
    if ttl > 0:
        _subscribed[bot_id] = (now + ttl, events)
    return events


def subscriptions_forget() -> None:
    """Subscriptions changed: ask the database again at the next event."""
    _subscribed.clear()


def conversation_data(conversation: Conversation) -> dict:
    return {
        "id": conversation.id,
        "visitor_id": conversation.visitor_id,
        "visitor": {
            "verified": conversation.visitor_verified,
            "name": conversation.visitor_name,
            "email": conversation.visitor_email,
        },
        "page_url": conversation.page_url,
        "referrer": conversation.referrer,
        "language": conversation.language,
        "started_at": conversation.started_at.isoformat(),
        "dashboard_url": settings.SITE_URL + reverse("dashboard:transcript", args=[conversation.id]),
    }


def message_data(message: Message) -> dict:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "text": message.text,
        "status": message.status,
        "citations": message.citations,
        "feedback": message.feedback or None,
        "created_at": message.created_at.isoformat(),
    }


def conversation_started_emit(*, conversation: Conversation) -> list[int]:
    return webhook_event_emit(
        bot=conversation.bot,
        event="conversation.started",
        data=lambda: {"conversation": conversation_data(conversation)},
    )


def message_created_emit(*, bot: Bot, message_id: int) -> list[int]:
    """A visitor's, staff member's or the bot's (finished) message was saved."""
    return webhook_event_emit(
        bot=bot, event="message.created", data=lambda: {"message": message_data(Message.objects.get(id=message_id))}
    )


def feedback_negative_emit(*, bot: Bot, message_id: int) -> list[int]:
    return webhook_event_emit(
        bot=bot,
        event="feedback.negative",
        data=lambda: {"message": message_data(Message.objects.get(id=message_id))},
    )


def handoff_requested_emit(*, conversation: Conversation, status: str, summary: str) -> list[int]:
    return webhook_event_emit(
        bot=conversation.bot,
        event="handoff.requested",
        data=lambda: {"status": status, "summary": summary, "conversation": conversation_data(conversation)},
    )
