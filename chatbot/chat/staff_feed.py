"""What every open dashboard hears of the chat: new messages, conversation rows that change, handoff requests.
Sent through the channel layer to the dashboards that see the bot (its agents' and the administrators')."""

import logging

from django.urls import reverse

from chatbot.models import Conversation, Message, staff_colleague_name
from chatbot.realtime.protocol import (
    ADMINS_GROUP,
    ConversationRow,
    DashboardMessage,
    HandoffStatus,
    bot_group,
    conversation_event,
    handoff_event,
    message_event,
    visitor_left_event,
)
from chatbot.realtime.relay import relay

logger = logging.getLogger(__name__)


def _send(*, bot_id: int, event: dict) -> None:
    # The dashboards are a convenience: a Redis hiccup must not fail the visitor's message.
    try:
        relay().group_send_many([(bot_group(bot_id), event), (ADMINS_GROUP, event)])
    except Exception:
        logger.exception("could not notify the dashboards of bot %s", bot_id)


def conversation_row(conversation: Conversation, *, preview: str | None = None) -> ConversationRow:
    if preview is None:
        last = conversation.messages.filter(role=Message.Role.VISITOR).order_by("-created_at", "-id").first()
        preview = last.text if last else ""
    return ConversationRow(
        id=conversation.id,
        url=reverse("dashboard:transcript", args=[conversation.id]),
        bot=conversation.bot.name,
        bot_slug=conversation.bot.slug,
        preview=preview[:160],
        page_url=conversation.page_url,
        started_at=conversation.started_at.isoformat(),
        last_message_at=conversation.last_message_at.isoformat(),
        handoff_requested=conversation.handoff_requested_at is not None,
        taken_over_by=staff_colleague_name(conversation.taken_over_by) if conversation.taken_over_by else None,
        taken_over_by_id=conversation.taken_over_by_id,
        assigned_to=staff_colleague_name(conversation.assigned_to) if conversation.assigned_to else None,
        assigned_to_id=conversation.assigned_to_id,
        resolved=conversation.resolved_at is not None,
        waiting=_waiting_for_human(conversation),
    )


def _waiting_for_human(conversation: Conversation) -> bool:
    """Asked for a person, not resolved, no staff message since (the inbox's "waiting for a human")."""
    if conversation.handoff_requested_at is None or conversation.resolved_at is not None:
        return False
    return not conversation.messages.filter(
        role=Message.Role.STAFF, created_at__gte=conversation.handoff_requested_at
    ).exists()


def dashboard_message(message: Message) -> DashboardMessage:
    if message.role == Message.Role.STAFF:
        author = staff_colleague_name(message.staff_user) if message.staff_user else "Staff"
    else:
        author = "Visitor" if message.role == Message.Role.VISITOR else "Bot"
    return DashboardMessage(
        id=message.id,
        role=message.role,
        text=message.text,
        author=author,
        status=message.status,
        created_at=message.created_at.isoformat(),
    )


def dashboard_conversation_notify(*, conversation: Conversation) -> None:
    conversation = Conversation.objects.select_related("bot", "taken_over_by", "assigned_to").get(pk=conversation.pk)
    _send(bot_id=conversation.bot_id, event=conversation_event(conversation=conversation_row(conversation)))


def dashboard_message_notify(*, message_id: int) -> None:
    """A message was saved: the conversation list moves it to the top, an open transcript shows the message."""
    message = (
        Message.objects.select_related(
            "conversation__bot", "conversation__taken_over_by", "conversation__assigned_to", "staff_user"
        )
        .filter(id=message_id)
        .first()
    )
    if message is None:
        return
    conversation = message.conversation
    _send(
        bot_id=conversation.bot_id,
        event=message_event(conversation_id=conversation.id, message=dashboard_message(message)),
    )
    preview = message.text if message.role == Message.Role.VISITOR else None
    _send(
        bot_id=conversation.bot_id,
        event=conversation_event(conversation=conversation_row(conversation, preview=preview)),
    )


def dashboard_visitor_left_notify(*, conversation: Conversation, following: Conversation) -> None:
    """The visitor left `conversation` for `following` (the widget's "New conversation"): an open transcript of the
    one left says so and links to the new one."""
    _send(
        bot_id=conversation.bot_id,
        event=visitor_left_event(
            conversation_id=conversation.id,
            new_conversation_id=following.id,
            new_url=reverse("dashboard:transcript", args=[following.id]),
        ),
    )


def dashboard_handoff_notify(*, conversation: Conversation, status: HandoffStatus, summary: str) -> None:
    _send(
        bot_id=conversation.bot_id,
        event=handoff_event(
            conversation_id=conversation.id,
            url=reverse("dashboard:transcript", args=[conversation.id]),
            bot=conversation.bot.name,
            status=status,
            summary=summary,
        ),
    )
    dashboard_conversation_notify(conversation=conversation)
