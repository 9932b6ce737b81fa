import secrets

from django.conf import settings
from django.db import models


def new_public_id() -> str:
    return secrets.token_urlsafe(12)


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
    adapter_id = models.CharField(max_length=200, blank=True, help_text="LoRA adapter served by TGI.")
    temperature = models.FloatField(default=0.3)
    top_p = models.FloatField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(default=512)
    stop_sequences = models.JSONField(default=list, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    strict_mode = models.BooleanField(
        default=False, help_text="Answer only when the knowledge base has relevant passages; never guess."
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
