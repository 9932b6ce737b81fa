"""Answers staff approved, returned verbatim."""

from django.conf import settings
from django.db import models
from pgvector.django import VectorField

from knowledge.embeddings import EMBEDDING_DIMENSIONS


class ApprovedAnswer(models.Model):
    """An answer staff wrote or approved: returned verbatim, without a model call, to questions close to it."""

    bot = models.ForeignKey("chatbot.Bot", on_delete=models.CASCADE, related_name="approved_answers")
    question = models.TextField()
    answer = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    times_used = models.PositiveIntegerField(default=0)
    # The bot answer a staff member corrected, when the approved answer came from that correction.
    source_message = models.ForeignKey(
        "chatbot.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.question[:80]
