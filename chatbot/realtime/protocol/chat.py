"""The chat's section of the protocol (`/ws/chat/<bot public id>/`, version 1): the visitor's frames both ways, the
conversation's channel-layer events, and what they have in common with the dashboard's section (message roles and
statuses, error codes, group names). See `chatbot.realtime.protocol`."""

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
HandoffStatus = Literal["requested", "unavailable"]


# --- channel-layer groups ----------------------------------------------------------------------------------------


def conversation_group(conversation_id: str) -> str:
    """The group every open widget of a conversation listens on (and a dashboard watching it)."""
    return f"conversation.{conversation_id}"


# =================================================================================================================
# The chat: `/ws/chat/<bot public id>/`
# =================================================================================================================


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


class HelloIdentity(TypedDict):
    """A logged-in user of the host site (docs/widget.md, "Verified visitors")."""

    user_id: str
    user_hash: str  # hex HMAC-SHA256 of user_id with the bot's identity secret
    email: NotRequired[str]
    name: NotRequired[str]


class HelloFrame(TypedDict):
    type: Literal["hello"]
    protocol: NotRequired[int]
    visitor_token: NotRequired[str | None]
    page_url: NotRequired[str]
    referrer: NotRequired[str]
    lang: NotRequired[str]
    identity: NotRequired[HelloIdentity]


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


class NewConversationFrame(TypedDict):
    """The visitor starts over: answered by a `ready` for their next conversation (the one they leave stays, for
    staff, and is never shown to them again)."""

    type: Literal["new_conversation"]


# --- server → client ---


class BotInfo(TypedDict):
    name: str
    greeting: str


class VisitorInfo(TypedDict):
    name: str
    email: str


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    protocol: int
    visitor_token: str
    conversation_id: str
    messages: list[MessagePayload]
    bot: BotInfo
    # Only when hello had an identity: "rejected" (hash missing or forged: ignored) or "verified" (with `visitor`).
    identity: NotRequired[Literal["verified", "rejected"]]
    visitor: NotRequired[VisitorInfo]


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
    status: HandoffStatus
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


class EchoFrame(TypedDict):
    type: Literal["echo"]
    payload: object


# Lead form (chatbot.leads.triggers): offered inline in the conversation; see docs/protocol.md "Lead form".
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


ServerFrame = (
    ReadyFrame
    | AckFrame
    | TypingFrame
    | TokenFrame
    | DoneFrame
    | ErrorFrame
    | HandoffFrame
    | StaffJoinedFrame
    | StaffLeftFrame
    | StaffMessageFrame
    | PongFrame
    | EchoFrame
    | LeadFormFrame
    | LeadSavedFrame
    | LeadErrorsFrame
)


def ready_frame(
    *,
    visitor_token: str,
    conversation_id: str,
    messages: list[MessagePayload],
    bot_name: str,
    greeting: str,
    identity: Literal["verified", "rejected"] | None = None,
    visitor: VisitorInfo | None = None,
) -> ReadyFrame:
    frame = ReadyFrame(
        type="ready",
        protocol=PROTOCOL_VERSION,
        visitor_token=visitor_token,
        conversation_id=conversation_id,
        messages=messages,
        bot=BotInfo(name=bot_name, greeting=greeting),
    )
    if identity is not None:
        frame["identity"] = identity
    if visitor is not None:
        frame["visitor"] = visitor
    return frame


def ack_frame(*, client_id: str, message_id: int, answer: bool) -> AckFrame:
    """`answer` tells the widget whether the bot will reply (not while staff have taken over, nor to a request for a
    person), so it shows the typing indicator only when something is coming."""
    return AckFrame(type="ack", client_id=client_id, message_id=message_id, answer=answer)


def error_frame(code: ErrorCode, message: str, *, retryable: bool = False) -> ErrorFrame:
    return ErrorFrame(type="error", code=code, message=message, retryable=retryable)


def handoff_frame(*, status: HandoffStatus, message: str) -> HandoffFrame:
    return HandoffFrame(type="handoff", status=status, message=message)


def staff_joined_frame(*, name: str) -> StaffJoinedFrame:
    return StaffJoinedFrame(type="staff_joined", name=name)


def staff_left_frame() -> StaffLeftFrame:
    return StaffLeftFrame(type="staff_left")


def staff_message_frame(*, message_id: int, name: str, text: str) -> StaffMessageFrame:
    return StaffMessageFrame(type="staff_message", message_id=message_id, name=name, text=text)


def pong_frame() -> PongFrame:
    return PongFrame(type="pong")


def echo_frame(payload: object) -> EchoFrame:
    return EchoFrame(type="echo", payload=payload)


def lead_form_frame(*, reason: LeadFormReason, form: LeadFormDefinition) -> LeadFormFrame:
    return LeadFormFrame(type="lead_form", reason=reason, form=form)


def lead_saved_frame(*, message: str) -> LeadSavedFrame:
    return LeadSavedFrame(type="lead_saved", message=message)


def lead_errors_frame(*, errors: dict[str, str]) -> LeadErrorsFrame:
    return LeadErrorsFrame(type="lead_errors", errors=errors)


# --- channel-layer events (worker or staff → every socket of a conversation) ---
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
    # "watchdog" when the watchdog ended a lost answer (its `chat.error` follows).
    finalised_by: NotRequired[str]


class ChatErrorEvent(TypedDict):
    type: Literal["chat.error"]
    code: ErrorCode
    message: str
    retryable: bool


class ChatFrameEvent(TypedDict):
    """Any other server frame to pass through to the visitor as is (staff messages, handoff updates, lead forms)."""

    type: Literal["chat.frame"]
    frame: ServerFrame


def typing_event(*, message_id: int) -> ChatTypingEvent:
    return ChatTypingEvent(type="chat.typing", message_id=message_id)


def token_event(*, message_id: int, text: str) -> ChatTokenEvent:
    return ChatTokenEvent(type="chat.token", message_id=message_id, text=text)


def done_event(
    *, message_id: int, status: MessageStatus, citations: list[Citation], text: str, finalised_by: str = ""
) -> ChatDoneEvent:
    event = ChatDoneEvent(type="chat.done", message_id=message_id, status=status, citations=citations, text=text)
    if finalised_by:
        event["finalised_by"] = finalised_by
    return event


def error_event(code: ErrorCode, message: str, *, retryable: bool = True) -> ChatErrorEvent:
    return ChatErrorEvent(type="chat.error", code=code, message=message, retryable=retryable)


def frame_event(frame: ServerFrame) -> ChatFrameEvent:
    return ChatFrameEvent(type="chat.frame", frame=frame)


# The frames a chat socket makes of the events (the events carry nothing a visitor may not see, except
# `finalised_by`, which stays on the server).


def typing_frame(event: ChatTypingEvent) -> TypingFrame:
    return TypingFrame(type="typing", message_id=event["message_id"])


def token_frame(event: ChatTokenEvent) -> TokenFrame:
    return TokenFrame(type="token", message_id=event["message_id"], text=event["text"])


def done_frame(event: ChatDoneEvent) -> DoneFrame:
    return DoneFrame(
        type="done",
        message_id=event["message_id"],
        status=event["status"],
        citations=event["citations"],
        text=event["text"],
    )
