"""The chat websocket protocol, version 1: every frame and channel-layer event, typed. `docs/protocol.md` is its
description for people; keep the two in step."""

from typing import Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1
MAX_MESSAGE_CHARS = 4000
# A frame bigger than this is refused before it is parsed.
MAX_FRAME_BYTES = 32 * 1024

MessageRole = Literal["visitor", "bot", "staff"]
MessageStatus = Literal["complete", "streaming", "stopped", "error", "retrieval_only"]
ErrorCode = Literal[
    "bad_frame",
    "unknown_type",
    "too_long",
    "busy",
    "rate_limited",
    "model_unavailable",
    "answer_failed",
    "not_found",
    "forbidden",
    "server_error",
]


class Citation(TypedDict):
    n: int
    title: str
    url: str


class MessagePayload(TypedDict):
    id: int
    role: MessageRole
    text: str
    citations: list[Citation]
    status: MessageStatus
    feedback: str | None
    staff_name: str | None
    created_at: str


# --- client → server ---


class HelloFrame(TypedDict):
    type: Literal["hello"]
    protocol: NotRequired[int]
    visitor_token: NotRequired[str | None]
    page_url: NotRequired[str]
    referrer: NotRequired[str]
    lang: NotRequired[str]


class MessageFrame(TypedDict):
    type: Literal["message"]
    text: str
    client_id: NotRequired[str]


class StopFrame(TypedDict):
    type: Literal["stop"]


class FeedbackFrame(TypedDict):
    type: Literal["feedback"]
    message_id: int
    value: Literal["up", "down"]


class HandoffRequestFrame(TypedDict):
    type: Literal["handoff_request"]


class PingFrame(TypedDict):
    type: Literal["ping"]


class LeadSubmitFrame(TypedDict):
    type: Literal["lead_submit"]
    fields: dict[str, str | bool]


class LeadDismissFrame(TypedDict):
    type: Literal["lead_dismiss"]


# --- server → client ---


class BotInfo(TypedDict):
    name: str
    greeting: str


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    protocol: int
    visitor_token: str
    conversation_id: str
    messages: list[MessagePayload]
    bot: BotInfo


class AckFrame(TypedDict):
    type: Literal["ack"]
    client_id: str
    message_id: int
    answer: bool


class TypingFrame(TypedDict):
    type: Literal["typing"]
    message_id: int


class TokenFrame(TypedDict):
    type: Literal["token"]
    message_id: int
    text: str


class DoneFrame(TypedDict):
    type: Literal["done"]
    message_id: int
    status: MessageStatus
    citations: list[Citation]
    text: str


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    message: str
    retryable: bool


class HandoffFrame(TypedDict):
    type: Literal["handoff"]
    status: Literal["requested", "unavailable"]
    message: str


class StaffJoinedFrame(TypedDict):
    type: Literal["staff_joined"]
    name: str


class StaffLeftFrame(TypedDict):
    type: Literal["staff_left"]


class StaffMessageFrame(TypedDict):
    type: Literal["staff_message"]
    message_id: int
    name: str
    text: str


class PongFrame(TypedDict):
    type: Literal["pong"]


# Lead form (chatbot.leads): offered inline in the conversation; see docs/protocol.md "Lead form".
LeadFormReason = Literal["before_chat", "after_messages", "cannot_answer", "no_human", "buying_intent"]
LeadFieldType = Literal["name", "email", "phone", "company", "text", "select", "consent"]


class LeadFormField(TypedDict):
    name: str
    type: LeadFieldType
    label: str
    required: bool
    options: list[str]


class LeadFormDefinition(TypedDict):
    title: str
    fields: list[LeadFormField]
    submit_label: str


class LeadFormFrame(TypedDict):
    type: Literal["lead_form"]
    reason: LeadFormReason
    form: LeadFormDefinition


class LeadSavedFrame(TypedDict):
    type: Literal["lead_saved"]
    message: str


class LeadErrorsFrame(TypedDict):
    type: Literal["lead_errors"]
    errors: dict[str, str]


# --- channel-layer events (worker or dashboard → every socket of a conversation) ---
# Channels maps the dotted type to the consumer method: "chat.token" → chat_token.


class ChatTypingEvent(TypedDict):
    type: Literal["chat.typing"]
    message_id: int


class ChatTokenEvent(TypedDict):
    type: Literal["chat.token"]
    message_id: int
    text: str


class ChatDoneEvent(TypedDict):
    type: Literal["chat.done"]
    message_id: int
    status: MessageStatus
    citations: list[Citation]
    text: str


class ChatErrorEvent(TypedDict):
    type: Literal["chat.error"]
    code: ErrorCode
    message: str
    retryable: bool


class ChatFrameEvent(TypedDict):
    """Any other server frame to pass through to the visitor as is (staff messages, handoff updates)."""

    type: Literal["chat.frame"]
    frame: dict
