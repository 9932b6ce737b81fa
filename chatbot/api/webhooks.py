"""Event webhook subscriptions: list (with each bot's lead webhook, its built-in subscription), add, read, remove,
and a subscription's recent deliveries."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.errors import HttpError

from chatbot.api.auth import bot_of, bots_of, reaches_all_bots, writable
from chatbot.api.schemas import Error, ValidationFailed, WebhookCreatedOut, WebhookDeliveryOut, WebhookIn, WebhookOut
from chatbot.models import Bot, WebhookSubscription
from chatbot.webhooks.subscriptions import (
    SubscriptionInvalid,
    subscription_create,
    subscription_delete,
    subscriptions_for,
)

router = Router(tags=["webhooks"])

LEAD_EVENTS = ["lead.created", "lead.updated"]


def subscription_out(subscription: WebhookSubscription) -> dict:
    return {
        "id": subscription.id,
        "kind": "subscription",
        "bot": subscription.bot.slug if subscription.bot else None,
        "url": subscription.url,
        "events": subscription.events,
        "description": subscription.description,
        "active": subscription.active,
        "created_at": subscription.created_at,
    }


def lead_webhook_out(bot: Bot) -> dict:
    return {
        "id": None,
        "kind": "lead_webhook",
        "bot": bot.slug,
        "url": bot.crm_webhook_url,
        "events": LEAD_EVENTS,
        "description": "The bot's lead webhook (crm_webhook_url), signed with the bot's webhook secret.",
        "active": True,
        "created_at": None,
    }


def _subscription_of(request, subscription_id: int) -> WebhookSubscription:
    subscriptions = subscriptions_for(bots=bots_of(request), all_bots=reaches_all_bots(request))
    return get_object_or_404(subscriptions, id=subscription_id)


@router.get("/webhooks", response=list[WebhookOut], summary="Event subscriptions and the bots' lead webhooks")
def webhooks_list(request):
    bots = bots_of(request)
    subscriptions = subscriptions_for(bots=bots, all_bots=reaches_all_bots(request)).order_by("-created_at")
    lead_webhooks = bots.exclude(crm_webhook_url="").order_by("slug")
    return [*map(subscription_out, subscriptions), *map(lead_webhook_out, lead_webhooks)]


@router.post(
    "/webhooks",
    response={201: WebhookCreatedOut, 400: ValidationFailed, 403: Error, 404: Error},
    summary="Subscribe a URL to events of one bot (or of every bot)",
)
def webhook_create(request, body: WebhookIn):
    if body.bot is None:
        writable(request)
        if not reaches_all_bots(request):
            raise HttpError(403, "Only a key that reaches every bot can subscribe to every bot's events.")
        bot = None
    else:
        bot = bot_of(request, body.bot, write=True)
    try:
        subscription = subscription_create(bot=bot, url=body.url, events=body.events, description=body.description)
    except SubscriptionInvalid as invalid:
        return Status(400, {"detail": str(invalid), "errors": {k: [v] for k, v in invalid.problems.items()}})
    return Status(201, {**subscription_out(subscription), "secret": subscription.secret})


@router.get("/webhooks/{subscription_id}", response={200: WebhookOut, 404: Error})
def webhook_read(request, subscription_id: int):
    return subscription_out(_subscription_of(request, subscription_id))


@router.delete("/webhooks/{subscription_id}", response={204: None, 403: Error, 404: Error})
def webhook_remove(request, subscription_id: int):
    writable(request)
    subscription_delete(subscription=_subscription_of(request, subscription_id))
    return Status(204, None)


@router.get(
    "/webhooks/{subscription_id}/deliveries",
    response={200: list[WebhookDeliveryOut], 404: Error},
    summary="The subscription's last 100 deliveries, each with its last error",
)
def webhook_deliveries(request, subscription_id: int):
    subscription = _subscription_of(request, subscription_id)
    deliveries = subscription.deliveries.prefetch_related("attempt_log").order_by("-created_at")[:100]
    return [
        {
            "id": d.id,
            "event": d.event,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at,
            "delivered_at": d.delivered_at,
            "created_at": d.created_at,
            "last_error": next((a.error for a in reversed(d.attempt_log.all())), ""),
        }
        for d in deliveries
    ]
