"""Leads visitors leave through a bot's form, and their delivery to the sales team."""

from django.db import models


class Lead(models.Model):
    """Contact details a visitor left through the bot's form; one per email per bot per day (re-submits update it)."""

    bot = models.ForeignKey("chatbot.Bot", on_delete=models.CASCADE, related_name="leads")
    conversation = models.ForeignKey(
        "chatbot.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
    )
    email = models.EmailField(blank=True, db_index=True)
    name = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, help_text="Every submitted field, by field name.")
    page_url = models.URLField(max_length=2000, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    utm = models.JSONField(default=dict, blank=True)
    consent_text = models.TextField(blank=True)
    consent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.email or self.name or f"lead {self.pk}"


class LeadDelivery(models.Model):
    """One way a lead reaches the sales team (email or CRM webhook), retried until it succeeds."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "CRM webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # The lead's version this delivery carries: an update of the lead is delivered again, once.
    lead_version = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # An email "delivered" by Django's console backend (EMAIL_URL unset) was only printed: the lead's page says so.
    delivered_to_console = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["lead", "channel", "lead_version"], name="lead_delivery_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} of {self.lead}: {self.status}"


class LeadDeliveryAttempt(models.Model):
    delivery = models.ForeignKey(LeadDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(auto_now_add=True)
    succeeded = models.BooleanField(default=False)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["attempted_at"]

    def __str__(self) -> str:
        return f"{self.delivery} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"
