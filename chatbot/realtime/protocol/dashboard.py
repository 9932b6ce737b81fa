"""The staff dashboard's section of the protocol (`/ws/dashboard/`): its frames both ways and the channel-layer
events services send to every dashboard that sees a bot. See `chatbot.realtime.protocol`."""

from typing import Literal, TypedDict

from chatbot.realtime.protocol.chat import (
    ChatDoneEvent,
    ChatTokenEvent,
    HandoffStatus,
    MessageRole,
)

# =================================================================================================================
# The staff dashboard: `/ws/dashboard/`
# =================================================================================================================
# Browser → server: `ping` (keeps the staff member counted as online), `watch {conversation_id, after_message_id?}`
# (also receive that conversation's streaming answers), `unwatch`.

# A staff member counts as online for this long after their last ping (the page pings every 20 s).
PRESENCE_TTL_S = 60
ADMINS_GROUP = "dashboard.admins"


def bot_group(bot_id: int) -> str:
    """The channel-layer group of the dashboards that see a bot: its agents. Administrators see every bot and
    listen on ADMINS_GROUP instead, so an event goes to both."""
    return f"dashboard.bot.{bot_id}"


def staff_user_group(user_id: int) -> str:
    """The dashboards one staff member has open: told when that member's access changes, so they close."""
    return f"dashboard.user.{user_id}"


# The close code of a dashboard socket whose staff member's access changed: the page reconnects with what it has now
# (4403 once it has none).
CLOSE_ACCESS_CHANGED = 4409


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
    taken_over_by_id: int | None  # the dashboard of that staff member notifies them of the visitor's messages
    # The inbox: who owns it (name and user id), resolved, asked for a person and no staff reply since.
    assigned_to: str | None
    assigned_to_id: int | None
    resolved: bool
    waiting: bool


class DashboardMessage(TypedDict):
    id: int
    role: MessageRole
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
    status: HandoffStatus
    summary: str


class VisitorLeftEvent(TypedDict):
    """The visitor started a new conversation (the widget's "New conversation"): staff writing in this one would
    not reach them any more."""

    type: Literal["dashboard.visitor_left"]
    conversation_id: str
    new_conversation_id: str
    new_url: str


class AccessChangedEvent(TypedDict):
    type: Literal["dashboard.access_changed"]


def access_changed_event() -> AccessChangedEvent:
    return AccessChangedEvent(type="dashboard.access_changed")


def conversation_event(*, conversation: ConversationRow) -> ConversationEvent:
    return ConversationEvent(type="dashboard.conversation", conversation=conversation)


def message_event(*, conversation_id: str, message: DashboardMessage) -> MessageEvent:
    return MessageEvent(type="dashboard.message", conversation_id=conversation_id, message=message)


def handoff_event(*, conversation_id: str, url: str, bot: str, status: HandoffStatus, summary: str) -> HandoffEvent:
    return HandoffEvent(
        type="dashboard.handoff", conversation_id=conversation_id, url=url, bot=bot, status=status, summary=summary
    )


def visitor_left_event(*, conversation_id: str, new_conversation_id: str, new_url: str) -> VisitorLeftEvent:
    return VisitorLeftEvent(
        type="dashboard.visitor_left",
        conversation_id=conversation_id,
        new_conversation_id=new_conversation_id,
        new_url=new_url,
    )


# --- frames (server → browser) ---


class DashboardConversationFrame(TypedDict):
    type: Literal["conversation"]
    conversation: ConversationRow


class DashboardMessageFrame(TypedDict):
    type: Literal["message"]
    conversation_id: str
    message: DashboardMessage


class DashboardHandoffFrame(TypedDict):
    type: Literal["handoff"]
    conversation_id: str
    url: str
    bot: str
    status: HandoffStatus
    summary: str


class DashboardVisitorLeftFrame(TypedDict):
    type: Literal["visitor_left"]
    conversation_id: str
    new_conversation_id: str
    new_url: str


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


class WatchingFrame(TypedDict):
    type: Literal["watching"]
    conversation_id: str


class DashboardErrorFrame(TypedDict):
    type: Literal["error"]
    message: str


def dashboard_conversation_frame(event: ConversationEvent) -> DashboardConversationFrame:
    return DashboardConversationFrame(type="conversation", conversation=event["conversation"])


def dashboard_message_frame(*, conversation_id: str, message: DashboardMessage) -> DashboardMessageFrame:
    return DashboardMessageFrame(type="message", conversation_id=conversation_id, message=message)


def dashboard_handoff_frame(event: HandoffEvent) -> DashboardHandoffFrame:
    return DashboardHandoffFrame(
        type="handoff",
        conversation_id=event["conversation_id"],
        url=event["url"],
        bot=event["bot"],
        status=event["status"],
        summary=event["summary"],
    )


def dashboard_visitor_left_frame(event: VisitorLeftEvent) -> DashboardVisitorLeftFrame:
    return DashboardVisitorLeftFrame(
        type="visitor_left",
        conversation_id=event["conversation_id"],
        new_conversation_id=event["new_conversation_id"],
        new_url=event["new_url"],
    )


def answer_token_frame(event: ChatTokenEvent, *, conversation_id: str) -> AnswerTokenFrame:
    return AnswerTokenFrame(
        type="answer_token", conversation_id=conversation_id, message_id=event["message_id"], text=event["text"]
    )


def answer_done_frame(event: ChatDoneEvent, *, conversation_id: str) -> AnswerDoneFrame:
    return AnswerDoneFrame(
        type="answer_done",
        conversation_id=conversation_id,
        message_id=event["message_id"],
        status=event["status"],
        text=event["text"],
    )


def watching_frame(*, conversation_id: str) -> WatchingFrame:
    return WatchingFrame(type="watching", conversation_id=conversation_id)


def dashboard_error_frame(message: str) -> DashboardErrorFrame:
    return DashboardErrorFrame(type="error", message=message)


# --- knowledge ingestion progress (worker → administrators' dashboards) ---


class SourceProgress(TypedDict):
    id: int
    knowledge_base_id: int
    status: str
    status_label: str
    done: int
    total: int
    error: str
    private_address_refused: bool  # the page offers to allow private addresses for this source
    last_synced_at: str | None


class SourceEvent(TypedDict):
    type: Literal["dashboard.source"]
    source: SourceProgress


class DashboardSourceFrame(TypedDict):
    type: Literal["source"]
    source: SourceProgress


def source_event(*, source: SourceProgress) -> SourceEvent:
    return SourceEvent(type="dashboard.source", source=source)


def dashboard_source_frame(event: SourceEvent) -> DashboardSourceFrame:
    return DashboardSourceFrame(type="source", source=event["source"])
