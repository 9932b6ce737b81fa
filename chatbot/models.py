import secrets

from django.conf import settings
from django.db import models
from pgvector.django import VectorField

from knowledge.embeddings import EMBEDDING_DIMENSIONS


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
    adapter_id = models.CharField(max_length=200, blank=True, help_text="LoRA adapter served by TGI.")
    temperature = models.FloatField(default=0.3)
    top_p = models.FloatField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(default=512)
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
    # Lead capture (see chatbot.leads): the form's fields and when it is shown, where leads are delivered.
    lead_form = models.JSONField(default=dict, blank=True)
    notification_email = models.EmailField(blank=True)
    crm_webhook_url = models.URLField(blank=True)
    # Signs webhook deliveries (HMAC-SHA256). Generated per bot; never exported.
    crm_webhook_secret = models.CharField(max_length=128, blank=True, default=new_webhook_secret)
    lead_retention_days = models.PositiveIntegerField(default=365)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def endpoint(self) -> str:
        return self.model_endpoint or settings.TGI_URL


def new_conversation_id() -> str:
    return secrets.token_urlsafe(16)


class Conversation(models.Model):
    """One visitor's chat with one bot; resumed across reloads through the visitor's signed token."""

    id = models.CharField(primary_key=True, max_length=32, default=new_conversation_id, editable=False)
    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="conversations")
    visitor_id = models.CharField(max_length=64, db_index=True)
    page_url = models.URLField(max_length=2000, blank=True)
    referrer = models.URLField(max_length=2000, blank=True)
    language = models.CharField(max_length=8, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    # Lead form (chatbot.leads): why it was last offered (shown again on reconnect) and whether it was dismissed.
    lead_form_reason = models.CharField(max_length=20, blank=True)
    lead_form_dismissed_at = models.DateTimeField(null=True, blank=True)
    taken_over_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [models.Index(fields=["bot", "visitor_id"], name="conversation_bot_visitor")]

    def __str__(self) -> str:
        return f"{self.bot} / {self.id}"

    @property
    def group_name(self) -> str:
        """The channel-layer group every open widget of this conversation listens on."""
        return f"conversation.{self.id}"


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
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class StaffMember(models.Model):
    """A dashboard user's role. Administrators manage bots and staff; agents work the bots they are assigned to."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        AGENT = "agent", "Agent"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_member")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)
    display_name = models.CharField(max_length=100, blank=True, help_text="The name visitors see.")
    bots = models.ManyToManyField(Bot, blank=True, related_name="staff_members")
    can_view_leads = models.BooleanField(default=False, help_text="Agents: may see the leads of their bots.")

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()


class ApprovedAnswer(models.Model):
    """An answer staff wrote or approved: returned verbatim, without a model call, to questions close to it."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="approved_answers")
    question = models.TextField()
    answer = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    times_used = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.question[:80]


class Lead(models.Model):
    """Contact details a visitor left through the bot's form; one per email per bot per day (re-submits update it)."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="leads")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
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
