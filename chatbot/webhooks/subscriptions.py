"""Event webhook subscriptions: creating (with address checks), listing, removing, and their recent deliveries."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q, QuerySet

from chatbot.models import WEBHOOK_EVENTS, Bot, WebhookSubscription
from chatbot.webhooks.events import subscriptions_forget
from knowledge.web import address_problem


class SubscriptionInvalid(ValueError):
    """A subscription that cannot be saved; `problems` says why, by field."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems.items()))
        self.problems = problems


def subscription_problems(*, url: str, events: list, allow_private: bool) -> dict[str, str]:
    problems = {}
    unknown = [event for event in events if event not in WEBHOOK_EVENTS] if isinstance(events, list) else events
    if not isinstance(events, list) or not events or unknown:
        problems["events"] = f"Choose one or more of {', '.join(WEBHOOK_EVENTS)}."
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems["url"] = "Give the receiver's http(s) URL."
    elif problem := address_problem(url, allow_private=allow_private or settings.PARLEY_ALLOW_PRIVATE_URLS):
        problems["url"] = problem
    return problems


def subscription_create(
    *, bot: Bot | None, url: str, events: list[str], description: str = "", allow_private_addresses: bool = False
) -> WebhookSubscription:
    """A subscription of `bot` (None: every bot) to `events`. Refused (SubscriptionInvalid) for an unknown event,
    or a URL that is not http(s), does not resolve, or reaches an internal address (unless the instance allows
    private URLs or an administrator allowed it for this subscription)."""
    problems = subscription_problems(url=url, events=events, allow_private=allow_private_addresses)
    if problems:
        raise SubscriptionInvalid(problems)
    subscription = WebhookSubscription.objects.create(
        bot=bot,
        url=url,
        events=sorted(set(events), key=WEBHOOK_EVENTS.index),
        description=description[:200],
        allow_private_addresses=allow_private_addresses,
    )
    subscriptions_forget()
    return subscription


def subscriptions_for(*, bots: QuerySet[Bot], all_bots: bool) -> QuerySet[WebhookSubscription]:
    """The subscriptions of these bots, and those of every bot when `all_bots` (a key or user that sees them all)."""
    scope = Q(bot__in=bots) | Q(bot__isnull=True) if all_bots else Q(bot__in=bots)
    return WebhookSubscription.objects.filter(scope).select_related("bot")


def subscription_delete(*, subscription: WebhookSubscription) -> None:
    subscription.delete()
    subscriptions_forget()
