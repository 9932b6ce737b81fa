"""Conversations and their messages."""

import secrets

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

from chatbot.realtime.protocol import conversation_group


def new_conversation_id() -> str:
    return secrets.token_urlsafe(16)


class Conversation(models.Model):
    """One visitor's chat with one bot; resumed across reloads through the visitor's signed token."""

    id = models.CharField(primary_key=True, max_length=32, default=new_conversation_id, editable=False)
    bot = models.ForeignKey("chatbot.Bot", on_delete=models.CASCADE, related_name="conversations")
    visitor_id = models.CharField(max_length=64, db_index=True)
    page_url = models.URLField(max_length=2000, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    language = models.CharField(max_length=8, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    # A verified visitor (the host site signed their user id): the name and email the host site gave.
    visitor_verified = models.BooleanField(default=False)
    visitor_name = models.CharField(max_length=200, blank=True)
    visitor_email = models.EmailField(blank=True)
    # Lead form (chatbot.leads.triggers): why it was last offered (shown again on reconnect), whether it was dismissed.
    lead_form_reason = models.CharField(max_length=20, blank=True)
    lead_form_dismissed_at = models.DateTimeField(null=True, blank=True)
    taken_over_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The inbox (chatbot.dashboard.inbox): the colleague who owns it, and whether staff marked it resolved (a visitor
    # who writes again reopens it).
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [
            models.Index(fields=["bot", "visitor_id"], name="conversation_bot_visitor"),
            # The inbox pages by (last activity, id), newest first: a cursor, not an offset.
            models.Index(fields=["-last_message_at", "-id"], name="conversation_inbox_order"),
        ]

    def __str__(self) -> str:
        return f"{self.bot} / {self.id}"

    @property
    def group_name(self) -> str:
        """The channel-layer group every open widget of this conversation listens on."""
        return conversation_group(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        VISITOR = "visitor", "Visitor"
        BOT = "bot", "Bot"
        STAFF = "staff", "Staff"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        STOPPED = "stopped", "Stopped by the visitor"
        ERROR = "error", "Failed"
        RETRIEVAL_ONLY = "retrieval_only", "Passages only (model unavailable)"

    class Feedback(models.TextChoices):
        UP = "up", "Helpful"
        DOWN = "down", "Not helpful"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The widget's id for a visitor message, so a frame re-sent after a reconnect is not saved twice.
    client_id = models.CharField(max_length=64, blank=True)
    in_reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    staff_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    citations = models.JSONField(default=list, blank=True)
    feedback = models.CharField(max_length=4, choices=Feedback.choices, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    # The answer's trace, for staff: what was retrieved, what was sent, what it cost.
    retrieved = models.JSONField(default=list, blank=True)
    prompt = models.JSONField(default=list, blank=True)
    model = models.CharField(max_length=200, blank=True)
    adapter_id = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    # A staff member's better version of a bot answer: what fine-tuning learns from (brand voice).
    corrected_text = models.TextField(blank=True)
    corrected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    corrected_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="message_unique_client_id",
            )
        ]
        # The lost-answer sweep looks for streaming answers every few seconds: a few rows, never a table scan.
        indexes = [
            models.Index(fields=["created_at"], condition=models.Q(status="streaming"), name="message_streaming"),
            # The inbox's search ("words in any message": ILIKE '%words%') without reading every message.
            GinIndex(OpClass(Upper("text"), name="gin_trgm_ops"), name="message_text_trigram"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"
