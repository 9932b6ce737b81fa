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


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def client_frame_parse(text_data: str | None, *, language: str = "en") -> dict | ErrorFrame:
    """The frame as a dict with a string `type`, or the error to answer with."""
    if text_data is None:
        return error_frame("bad_frame", chat_text("not_json_text", language))
    if len(text_data) > MAX_FRAME_BYTES:
        return error_frame("too_long", chat_text("too_long", language, max=MAX_MESSAGE_CHARS))
    try:
        frame = json.loads(text_data)
    except ValueError:
        return error_frame("bad_frame", chat_text("bad_json", language))
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return error_frame("bad_frame", chat_text("not_an_object", language))
    if _contains_nul(frame):
        # PostgreSQL text cannot hold NUL; no visitor types one.
        return error_frame("bad_frame", chat_text("nul", language))
    return frame


def is_error(value) -> bool:
    return isinstance(value, dict) and value.get("type") == "error"


@dataclass(frozen=True)
class HelloValues:
    visitor_token: str | None
    page_url: str
    referrer: str
    language: str


def hello_read(frame: dict) -> HelloValues:
    token = frame.get("visitor_token")
    return HelloValues(
        visitor_token=token if isinstance(token, str) and token else None,
        page_url=str(frame.get("page_url") or ""),
        referrer=str(frame.get("referrer") or ""),
        language=str(frame.get("lang") or ""),
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
