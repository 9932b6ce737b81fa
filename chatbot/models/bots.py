"""A bot: its voice, knowledge, model settings and where its leads go."""

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class Bot(models.Model):
    """An assistant a company puts on its website: its voice, its knowledge and its model settings."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    persona = models.TextField(
        blank=True,
        help_text="Persona and brand-voice instructions given to the model before every answer.",
    )
    greeting = models.CharField(max_length=500, blank=True, default="Hi! How can I help you today?")
    color = models.CharField(max_length=7, default="#4f46e5")
    avatar_url = models.URLField(blank=True)
    language = models.CharField(max_length=8, default="en")
    allowed_origins = models.JSONField(
        default=list, blank=True, help_text="Origins (https://www.example.com) allowed to embed the widget."
    )
    # Model server and generation parameters; an empty endpoint means the instance's TGI_URL.
    model_endpoint = models.URLField(blank=True)
    # The bearer token for `model_endpoint` when it is another server than TGI_URL (the instance's TGI_API_KEY goes
    # to TGI_URL only). Never exported, never shown back in full.
    model_api_key = models.CharField(max_length=500, blank=True)
    adapter_id = models.CharField(max_length=200, blank=True, help_text="LoRA adapter served by TGI.")
    temperature = models.FloatField(default=0.3)
    top_p = models.FloatField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(default=512)
    # The most passages an answer sends the model (knowledge.passages): fewer when they are not relevant enough or
    # do not fit the prompt.
    max_passages = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="The most passages of the knowledge base sent to the model with a question (1 to 20).",
    )
    stop_sequences = models.JSONField(default=list, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    knowledge_base = models.ForeignKey(
        "knowledge.KnowledgeBase", null=True, blank=True, on_delete=models.SET_NULL, related_name="bots"
    )
    strict_mode = models.BooleanField(
        default=False, help_text="Answer only when the knowledge base has relevant passages; never guess."
    )
    # Human handoff: when nobody is online or it is outside these hours, the widget offers the lead form instead.
    business_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"], ...}}; empty: always open.',
    )
    # Lead capture (see chatbot.leads.form): the form's fields and when it is shown, where leads are delivered.
    lead_form = models.JSONField(default=dict, blank=True)
    notification_email = models.EmailField(blank=True)
    crm_webhook_url = models.URLField(blank=True)
    # Signs webhook deliveries (HMAC-SHA256). Generated per bot; never exported.
    crm_webhook_secret = models.CharField(max_length=128, blank=True, default=new_webhook_secret)
    lead_retention_days = models.PositiveIntegerField(default=365)
    # Verified visitors (docs/widget.md): the host site signs a logged-in user's id with it (HMAC-SHA256).
    identity_secret = models.CharField(max_length=128, blank=True, default=new_webhook_secret)
    # Conversations (with their messages) are deleted this many days after their last message; None keeps them.
    conversation_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Delete conversations this many days after their last message; empty: keep them.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint(self) -> str:
        return self.model_endpoint or settings.TGI_URL

    @property
    def endpoint_api_key(self) -> str | None:
        """The token for `endpoint`: the instance's TGI_API_KEY for the instance's own TGI_URL only; the bot's own
        key for any other server (a bot's endpoint must never receive the instance's token)."""
        if self.endpoint.rstrip("/") == settings.TGI_URL.rstrip("/"):
            return settings.TGI_API_KEY or None
        return self.model_api_key or None
