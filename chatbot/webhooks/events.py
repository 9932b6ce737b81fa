"""The events Parley emits to webhook subscriptions (docs/api.md, "Event webhooks"): each one becomes a delivery per
subscribed URL, in the transaction that made it happen, sent by a worker once committed."""

from __future__ import annotations

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


def conversation_started_emit(*, conversation: Conversation) -> None:
    webhook_event_emit(
        bot=conversation.bot,
        event="conversation.started",
        data=lambda: {"conversation": conversation_data(conversation)},
    )


def message_created_emit(*, bot: Bot, message_id: int) -> None:
    """A visitor's, staff member's or the bot's (finished) message was saved."""
    webhook_event_emit(
        bot=bot, event="message.created", data=lambda: {"message": message_data(Message.objects.get(id=message_id))}
    )


def feedback_negative_emit(*, bot: Bot, message_id: int) -> None:
    webhook_event_emit(
        bot=bot,
        event="feedback.negative",
        data=lambda: {"message": message_data(Message.objects.get(id=message_id))},
    )


def handoff_requested_emit(*, conversation: Conversation, status: str, summary: str) -> None:
    webhook_event_emit(
        bot=conversation.bot,
        event="handoff.requested",
        data=lambda: {"status": status, "summary": summary, "conversation": conversation_data(conversation)},
    )
