"""The staff websocket (`/ws/dashboard/`): its frames and channel-layer events, typed. `docs/dashboard.md`
describes them for people; keep the two in step.

Browser → server: `ping` (keeps the staff member counted as online), `watch {conversation_id}` (also receive that
conversation's streaming answers), `unwatch`.
Server → browser: `conversation`, `message`, `handoff`, `answer_token`, `answer_done`, `pong`, `error`.
"""

from typing import Literal, TypedDict

# A staff member counts as online for this long after their last ping (the page pings every 20 s).
PRESENCE_TTL_S = 60
ADMINS_GROUP = "dashboard.admins"


def bot_group(bot_id: int) -> str:
    """The channel-layer group of the dashboards that see a bot: its agents. Administrators see every bot and
    listen on ADMINS_GROUP instead, so an event goes to both."""
    return f"dashboard.bot.{bot_id}"


class ConversationRow(TypedDict):
    id: str
    url: str
    bot: str
    bot_slug: str
    preview: str
    page_url: str
    started_at: str
    last_message_at: str
    handoff_requested: bool
    taken_over_by: str | None


class DashboardMessage(TypedDict):
    id: int
    role: Literal["visitor", "bot", "staff"]
    text: str
    author: str
    status: str
    created_at: str


# --- channel-layer events (services → every dashboard that sees the bot) ---


class ConversationEvent(TypedDict):
    type: Literal["dashboard.conversation"]
    conversation: ConversationRow


class MessageEvent(TypedDict):
    type: Literal["dashboard.message"]
    conversation_id: str
    message: DashboardMessage


class HandoffEvent(TypedDict):
    type: Literal["dashboard.handoff"]
    conversation_id: str
    url: str
    bot: str
    status: Literal["requested", "unavailable"]
    summary: str


# --- frames (server → browser) ---


class ConversationFrame(TypedDict):
    type: Literal["conversation"]
    conversation: ConversationRow


class MessageFrame(TypedDict):
    type: Literal["message"]
    conversation_id: str
    message: DashboardMessage


class HandoffFrame(TypedDict):
    type: Literal["handoff"]
    conversation_id: str
    url: str
    bot: str
    status: Literal["requested", "unavailable"]
    summary: str


class AnswerTokenFrame(TypedDict):
    """Part of a bot answer streaming in a watched conversation."""

    type: Literal["answer_token"]
    conversation_id: str
    message_id: int
    text: str


class AnswerDoneFrame(TypedDict):
    type: Literal["answer_done"]
    conversation_id: str
    message_id: int
    status: str
    text: str
