"""The staff inbox: internal notes on a conversation and the team's saved replies."""

from django.conf import settings
from django.db import models


class ConversationNote(models.Model):
    """A note staff leave on a conversation for each other. Never sent to the visitor, never in their history."""

    conversation = models.ForeignKey("chatbot.Conversation", on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.text[:60]


class SavedReply(models.Model):
    """A canned reply staff insert in the takeover box by typing `/shortcut`; for one bot, or every bot."""

    bot = models.ForeignKey(
        "chatbot.Bot", null=True, blank=True, on_delete=models.CASCADE, related_name="saved_replies"
    )
    shortcut = models.SlugField(max_length=40)
    text = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["shortcut", "id"]
        constraints = [
            # One /shortcut per bot, and one among the replies for every bot (bot NULL).
            models.UniqueConstraint(
                fields=["bot", "shortcut"], nulls_distinct=False, name="saved_reply_unique_shortcut"
            )
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"
