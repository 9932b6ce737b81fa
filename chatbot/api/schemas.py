"""The API's request and response bodies: what the OpenAPI document at /api/v1/openapi.json is generated from."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from ninja import Field, Schema

WebhookEvent = Literal[
    "conversation.started", "message.created", "handoff.requested", "lead.created", "lead.updated", "feedback.negative"
]


class Error(Schema):
    detail: str


class ValidationFailed(Schema):
    detail: str
    errors: dict[str, list[str]] = Field(default_factory=dict, description="What is wrong, by field.")


class Citation(Schema):
    n: int
    title: str
    url: str


# --- ask ---


class Visitor(Schema):
    id: str = Field(..., min_length=1, max_length=128, description="Your user id: the same conversation everywhere.")
    email: str = ""
    name: str = ""


class AskIn(Schema):
    question: str = Field(..., min_length=1, max_length=4000)
    conversation_id: str | None = Field(None, description="Continue this conversation (a follow-up).")
    visitor: Visitor | None = None


class AskOut(Schema):
    conversation_id: str
    message_id: int | None = Field(description="The bot's answer (null when no answer follows: see status).")
    text: str
    citations: list[Citation]
    status: str = Field(
        description="complete, stopped, error or retrieval_only (the widget's answer statuses); handoff_requested or "
        "handoff_unavailable when the question asked for a person; taken_over when staff answer instead."
    )


# --- bots ---


class BotOut(Schema):
    slug: str
    name: str
    public_id: str
    persona: str
    greeting: str
    color: str
    avatar_url: str
    language: str
    allowed_origins: list[str]
    model_endpoint: str
    adapter_id: str
    temperature: float
    top_p: float | None
    max_new_tokens: int
    max_passages: int
    stop_sequences: list[str]
    seed: int | None
    strict_mode: bool
    business_hours: dict[str, Any]
    lead_form: dict[str, Any]
    notification_email: str
    crm_webhook_url: str
    lead_retention_days: int
    embed_snippet: str
    created_at: datetime
    updated_at: datetime


class BotPatch(Schema):
    """Any of the dashboard form's settings; the others keep their value. Validated like the form."""

    name: str | None = None
    slug: str | None = None
    persona: str | None = None
    greeting: str | None = None
    color: str | None = None
    avatar_url: str | None = None
    language: str | None = None
    allowed_origins: list[str] | None = None
    model_endpoint: str | None = None
    adapter_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    max_passages: int | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    strict_mode: bool | None = None
    business_hours: dict[str, Any] | None = None
    lead_form: dict[str, Any] | None = None
    notification_email: str | None = None
    crm_webhook_url: str | None = None
    lead_retention_days: int | None = None


class ApprovedAnswerIn(Schema):
    question: str = Field(..., min_length=1, max_length=4000)
    answer: str = Field(..., min_length=1, max_length=8000)
    add_faq: bool = Field(True, description="Also add it to the knowledge base as an FAQ entry.")


class ApprovedAnswerOut(Schema):
    id: int
    question: str
    answer: str
    times_used: int
    created_at: datetime


# --- conversations ---


class VisitorOut(Schema):
    verified: bool
    name: str
    email: str


class ConversationOut(Schema):
    id: str
    bot: str
    visitor_id: str
    visitor: VisitorOut
    preview: str
    page_url: str
    started_at: datetime
    last_message_at: datetime
    handoff_requested: bool
    taken_over_by: str | None
    has_lead: bool


class MessageOut(Schema):
    id: int
    role: Literal["visitor", "bot", "staff"]
    text: str
    status: str
    citations: list[Citation]
    feedback: str | None
    staff_name: str | None
    created_at: datetime


class ConversationDetailOut(ConversationOut):
    referrer: str
    language: str
    messages: list[MessageOut]


class ConversationPage(Schema):
    items: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    next_offset: int | None = Field(
        description="Deprecated (use `next_cursor`): pass as `offset` for the next page; null on the last page, "
        "and when paging with `cursor`."
    )


class ConversationFilters(Schema):
    """The dashboard's filters, and paging."""

    bot: str = Field("", description="A bot's slug.")
    date_from: date | None = Field(None, alias="from", description="Active on or after this day.")
    date_to: date | None = Field(None, alias="to", description="Started on or before this day.")
    has_lead: bool = False
    negative_feedback: bool = False
    handed_off: bool = False
    unanswered: bool = False
    q: str = Field("", max_length=200, description="Text in any message.")
    view: Literal["", "mine", "unassigned", "waiting"] = Field(
        "",
        description="The dashboard's inbox: `mine` (assigned to the key's creator), `unassigned`, `waiting` (for a "
        "person). Shows open conversations unless `status` says otherwise.",
    )
    status: Literal["", "open", "resolved"] = Field("", description="`open` or `resolved`; both when empty.")
    topic: int | None = Field(None, description="A topic's id (the dashboard's Topics page).")
    limit: int = Field(50, ge=1, le=100)
    cursor: str = Field("", max_length=200, description="The previous page's `next_cursor`.")
    offset: int = Field(
        0, ge=0, le=100_000, description="Deprecated (use `cursor`): skip this many conversations. Not with `cursor`."
    )


class StaffReplyIn(Schema):
    text: str = Field(..., min_length=1, max_length=4000)
    staff_username: str = Field(
        "",
        max_length=150,
        description="The staff member who writes (takes the conversation over if nobody has): by default the key's "
        "creator; another staff member only with a key that reaches every bot.",
    )


class HandBackIn(Schema):
    staff_username: str = Field(
        "",
        max_length=150,
        description="The staff member who hands back: by default the key's creator; another staff member only with "
        "a key that reaches every bot. Only who took the conversation over, or an administrator, can hand it back.",
    )


# --- leads ---


class DeliveryOut(Schema):
    channel: str
    status: str
    attempts: int
    delivered_at: datetime | None
    delivered_to_console: bool


class LeadOut(Schema):
    id: int
    bot: str
    email: str
    name: str
    fields: dict[str, Any]
    page_url: str
    referrer: str
    utm: dict[str, str]
    consent_text: str
    consent_at: datetime | None
    conversation_id: str | None
    created_at: datetime
    updated_at: datetime
    deliveries: list[DeliveryOut]


class LeadFilters(Schema):
    since: date | None = None
    until: date | None = None
    consent: Literal["yes", "no"] | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)


class LeadPage(Schema):
    items: list[LeadOut]
    count: int
    next_offset: int | None


class VisitorDataDeleteIn(Schema):
    email: str = ""
    visitor_id: str = ""


class VisitorDataDeletedOut(Schema):
    conversations: int
    messages: int
    leads: int


# --- knowledge ---


class SourceOut(Schema):
    id: int
    kind: str
    title: str
    url: str
    status: Literal["pending", "running", "ready", "failed"]
    error: str
    documents_total: int
    documents_done: int
    resync_every_hours: int | None
    last_synced_at: datetime | None
    created_at: datetime


class ArchiveUploadOut(Schema):
    """What a .zip archive added: a source per document inside it, and why each member left out was."""

    sources: list[SourceOut]
    refused: list[str] = Field(description="One sentence per archive member left out, saying why.")


class SourceIn(Schema):
    kind: Literal["url", "sitemap", "site", "faq"]
    url: str = Field("", max_length=2000)
    resync_every_hours: int | None = Field(None, ge=1)
    max_pages: int | None = Field(None, ge=1, le=10_000, description="site and sitemap: at most this many pages.")
    max_depth: int | None = Field(None, ge=0, le=50, description="site: at most this many links from the start page.")
    include_patterns: list[str] = Field(default_factory=list, description="site: only paths matching one of these.")
    exclude_patterns: list[str] = Field(default_factory=list, description="site: never paths matching these.")
    question: str = ""
    answer: str = ""


# --- webhooks ---


class WebhookIn(Schema):
    bot: str | None = Field(None, description="A bot's slug; null: every bot (needs a key that reaches every bot).")
    url: str = Field(..., max_length=2000)
    events: list[WebhookEvent] = Field(..., min_length=1)
    description: str = Field("", max_length=200)


class WebhookOut(Schema):
    id: int | None = Field(description="null for a bot's lead webhook (set with the bot's crm_webhook_url).")
    kind: Literal["subscription", "lead_webhook"]
    bot: str | None
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime | None


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="Verifies X-Parley-Signature. Shown once: store it.")


class WebhookDeliveryOut(Schema):
    id: int
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    last_error: str
