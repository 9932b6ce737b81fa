"""What the bot's own model says about the conversations (chatbot.insights): a summary and a sentiment per finished
conversation, topics of similar visitor questions, and the runs that wrote them."""

from django.db import models
from pgvector.django import VectorField

from knowledge.embeddings import EMBEDDING_DIMENSIONS


class ConversationInsight(models.Model):
    class Sentiment(models.TextChoices):
        POSITIVE = "positive", "Positive"
        NEUTRAL = "neutral", "Neutral"
        NEGATIVE = "negative", "Negative"

    conversation = models.OneToOneField(
        "chatbot.Conversation", primary_key=True, on_delete=models.CASCADE, related_name="insight"
    )
    summary = models.TextField(blank=True)
    sentiment = models.CharField(max_length=10, choices=Sentiment.choices, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # The conversation's last_message_at when it was read: a message after it makes this insight stale.
    analysed_until = models.DateTimeField()
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.summary[:80]


class Topic(models.Model):
    """A cluster of similar visitor questions of one bot. Kept from one run to the next while its centre stays put,
    so its label (and links to it) last."""

    bot = models.ForeignKey("chatbot.Bot", on_delete=models.CASCADE, related_name="topics")
    # Written by the model; empty without one: the topic is then named by its most central question.
    label = models.CharField(max_length=100, blank=True)
    central_message = models.ForeignKey(
        "chatbot.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    centroid = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    question_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-question_count", "id"]

    def __str__(self) -> str:
        return self.label or f"topic {self.pk}"


class TopicQuestion(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="questions")
    message = models.ForeignKey("chatbot.Message", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey("chatbot.Conversation", on_delete=models.CASCADE, related_name="+")
    asked_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["topic", "message"], name="topic_question_unique")]
        indexes = [models.Index(fields=["topic", "asked_at"], name="topic_question_asked")]

    def __str__(self) -> str:
        return f"{self.topic_id}: message {self.message_id}"


class InsightRun(models.Model):
    """One analysis of a bot's conversations, nightly or asked for on the analytics page."""

    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "Nightly"
        ON_DEMAND = "on_demand", "On demand"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    bot = models.ForeignKey("chatbot.Bot", on_delete=models.CASCADE, related_name="insight_runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # The model that wrote summaries and labels; empty when the bot has none configured.
    model = models.CharField(max_length=200, blank=True)
    conversations_summarised = models.PositiveIntegerField(default=0)
    topics = models.PositiveIntegerField(default=0)
    tokens_used = models.PositiveIntegerField(default=0)
    budget_exhausted = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.bot} {self.trigger} {self.status}"
