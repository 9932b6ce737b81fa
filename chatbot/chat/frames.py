"""Reading what a visitor's widget sends: a frame is parsed and checked here, and a bad one becomes the `error`
frame to answer with (in the visitor's `language`). The services behind the chat socket only ever see well-formed
values."""

import json
from dataclasses import dataclass

from chatbot.chat.texts import chat_text
from chatbot.realtime.protocol import MAX_FRAME_BYTES, MAX_MESSAGE_CHARS, ErrorFrame, error_frame

# Frames allowed before `hello`.
BEFORE_HELLO = frozenset({"hello", "ping"})
MAX_CLIENT_ID_CHARS = 64
MAX_LEAD_FIELDS = 50
# No frame of the protocol nests deeper than a few levels; deeper is an attack on the parser, not a frame.
MAX_FRAME_DEPTH = 16


def _too_deep_or_nul(frame) -> str:
    """Why a parsed frame is refused ("depth", "nul"), or "". Iterative: a recursive walk of a deep frame would
    overflow the stack the way the parser did."""
    pending = [(frame, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_FRAME_DEPTH:
            return "depth"
        if isinstance(value, str):
            if "\x00" in value:
                return "nul"
        elif isinstance(value, dict):
            pending += [(key, depth) for key in value] + [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            pending += [(item, depth + 1) for item in value]
    return ""


def client_frame_parse(text_data: str | None, *, language: str = "en") -> dict | ErrorFrame:
    """The frame as a dict with a string `type`, or the error to answer with."""
    if text_data is None:
        return error_frame("bad_frame", chat_text("not_json_text", language))
    if len(text_data) > MAX_FRAME_BYTES:
        return error_frame("too_long", chat_text("too_long", language, max=MAX_MESSAGE_CHARS))
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):
        # Any failure to parse is the sender's: "[" * 20000 exhausts the parser's recursion, not our socket.
        return error_frame("bad_frame", chat_text("bad_json", language))
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return error_frame("bad_frame", chat_text("not_an_object", language))
    refused = _too_deep_or_nul(frame)
    if refused == "depth":
        return error_frame("bad_frame", chat_text("too_deep", language, max=MAX_FRAME_DEPTH))
    if refused == "nul":
        # PostgreSQL text cannot hold NUL; no visitor types one.
        return error_frame("bad_frame", chat_text("nul", language))
    return frame


def is_error(value) -> bool:
    return isinstance(value, dict) and value.get("type") == "error"


@dataclass(frozen=True)
class HelloIdentityValues:
    user_id: str
    user_hash: str
    email: str
    name: str


@dataclass(frozen=True)
class HelloValues:
    visitor_token: str | None
    page_url: str
    referrer: str
    language: str
    # The host site's logged-in user, not yet verified (chatbot.chat.identity); None when hello carried none.
    identity: HelloIdentityValues | None = None


def _identity_read(value) -> HelloIdentityValues | None:
    if not isinstance(value, dict):
        return None

    def text(name: str, limit: int) -> str:
        item = value.get(name)
        return item[:limit] if isinstance(item, str) else ""

    return HelloIdentityValues(
        user_id=text("user_id", 256), user_hash=text("user_hash", 128), email=text("email", 254), name=text("name", 200)
    )


def hello_read(frame: dict) -> HelloValues:
    token = frame.get("visitor_token")
    return HelloValues(
        visitor_token=token if isinstance(token, str) and token else None,
        page_url=str(frame.get("page_url") or ""),
        referrer=str(frame.get("referrer") or ""),
        language=str(frame.get("lang") or ""),
        identity=_identity_read(frame.get("identity")),
    )


@dataclass(frozen=True)
class MessageValues:
    text: str
    client_id: str


def message_read(frame: dict, *, language: str = "en") -> MessageValues | ErrorFrame:
    text = frame.get("text")
    client_id = frame.get("client_id") or ""
    if not isinstance(text, str) or not text.strip():
        return error_frame("bad_frame", chat_text("empty_message", language))
    if not isinstance(client_id, str) or len(client_id) > MAX_CLIENT_ID_CHARS:
        return error_frame("bad_frame", chat_text("bad_client_id", language, max=MAX_CLIENT_ID_CHARS))
    if len(text) > MAX_MESSAGE_CHARS:
        return error_frame("too_long", chat_text("too_long", language, max=MAX_MESSAGE_CHARS))
    return MessageValues(text=text.strip(), client_id=client_id)


@dataclass(frozen=True)
class FeedbackValues:
    message_id: int
    value: str


def feedback_read(frame: dict, *, language: str = "en") -> FeedbackValues | ErrorFrame:
    message_id, value = frame.get("message_id"), frame.get("value")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or value not in ("up", "down"):
        return error_frame("bad_frame", chat_text("bad_feedback", language))
    return FeedbackValues(message_id=message_id, value=value)


def lead_fields_read(frame: dict, *, language: str = "en") -> dict | ErrorFrame:
    fields = frame.get("fields")
    if not isinstance(fields, dict) or len(fields) > MAX_LEAD_FIELDS:
        return error_frame("bad_frame", chat_text("bad_lead_fields", language))
    return fields
