"""What connects Parley to the rest of a business: API keys and event webhook subscriptions with their deliveries."""

import secrets

from django.conf import settings
from django.db import models

# The events a webhook subscription can ask for (docs/api.md, "Event webhooks").
WEBHOOK_EVENTS = (
    "conversation.started",
    "message.created",
    "handoff.requested",
    "lead.created",
    "lead.updated",
    "feedback.negative",
)


def new_subscription_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class ApiKey(models.Model):
    """A key for the REST API. Only its SHA-256 is stored; the key itself is shown once, when it is created."""

    name = models.CharField(max_length=100)
    # The key's first characters after "pk_": shown to tell keys apart, and how a presented key is looked up.
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    # None named: every bot, including bots created later.
    bots = models.ManyToManyField("chatbot.Bot", blank=True, related_name="api_keys")
    read_only = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (pk_{self.prefix}…)"


class WebhookSubscription(models.Model):
    """A URL that receives some events of one bot (or of every bot), signed with the subscription's secret."""

    bot = models.ForeignKey(
        "chatbot.Bot", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_subscriptions"
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=128, default=new_subscription_secret)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    # Set only by administrators in the dashboard (an intranet CRM); the API never sets it.
    allow_private_addresses = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)})"


class WebhookDelivery(models.Model):
    """One event on its way to one subscription, retried with backoff like a lead's delivery."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event} to {self.subscription.url}: {self.status}"


class WebhookDeliveryAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(auto_now_add=True)
    succeeded = models.BooleanField(default=False)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["attempted_at"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
