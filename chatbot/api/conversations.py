"""Conversations: the dashboard's list (same filters, with paging), one with its messages, a staff reply."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from ninja import Query, Router, Status
from ninja.errors import HttpError

from chatbot.api.auth import bots_of, conversation_of
from chatbot.api.schemas import (
    ConversationDetailOut,
    ConversationFilters,
    ConversationPage,
    Error,
    MessageOut,
    StaffReplyIn,
)
from chatbot.chat import staff as chat_staff
from chatbot.chat.conversations import conversation_history
from chatbot.dashboard import selectors
from chatbot.models import Conversation, Lead, Message, StaffMember, staff_colleague_name

router = Router(tags=["conversations"])


def conversation_out(conversation: Conversation) -> dict:
    return {
        "id": conversation.id,
        "bot": conversation.bot.slug,
        "visitor_id": conversation.visitor_id,
        "visitor": {
            "verified": conversation.visitor_verified,
            "name": conversation.visitor_name,
            "email": conversation.visitor_email,
        },
        "preview": (getattr(conversation, "preview", None) or "")[:160],
        "page_url": conversation.page_url,
        "started_at": conversation.started_at,
        "last_message_at": conversation.last_message_at,
        "handoff_requested": conversation.handoff_requested_at is not None,
        "taken_over_by": staff_colleague_name(conversation.taken_over_by) if conversation.taken_over_by else None,
        "has_lead": bool(getattr(conversation, "has_lead", False)),
    }


@router.get("/conversations", response=ConversationPage, summary="Conversations, most recent activity first")
def conversations_list(request, filters: Query[ConversationFilters]):
    dashboard_filters = selectors.ConversationFilters(
        **filters.model_dump(exclude={"limit", "offset"}) | {"q": filters.q.strip()}
    )
    # The dashboard's selector, read one row past the page to know whether another follows.
    rows = selectors.conversation_list(
        bots=bots_of(request), filters=dashboard_filters, limit=filters.offset + filters.limit + 1
    )[filters.offset :]
    more = len(rows) > filters.limit
    return {
        "items": [conversation_out(row) for row in rows[: filters.limit]],
        "next_offset": filters.offset + filters.limit if more else None,
    }


@router.get("/conversations/{conversation_id}/", response={200: ConversationDetailOut, 404: Error})
def conversation_read(request, conversation_id: str):
    conversation = conversation_of(request, conversation_id)
    last = conversation.messages.filter(role=Message.Role.VISITOR).order_by("-created_at", "-id").first()
    conversation.preview = last.text if last else ""
    conversation.has_lead = Lead.objects.filter(conversation=conversation).exists()
    return {
        **conversation_out(conversation),
        "referrer": conversation.referrer,
        "language": conversation.language,
        "messages": conversation_history(conversation=conversation, limit=10_000),
    }


@router.post(
    "/conversations/{conversation_id}/messages",
    response={201: MessageOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Write to the visitor as a staff member (taking the conversation over if nobody has)",
)
def staff_reply(request, conversation_id: str, body: StaffReplyIn):
    conversation = conversation_of(request, conversation_id, write=True)
    user = get_user_model().objects.filter(username=body.staff_username, is_active=True).first()
    member = StaffMember.objects.filter(user=user).first() if user else None
    may = user is not None and (
        user.is_superuser
        or (member is not None and member.role == StaffMember.Role.ADMIN)
        or (member is not None and member.bots.filter(id=conversation.bot_id).exists())
    )
    if not may:
        raise HttpError(400, f"{body.staff_username!r} is not a staff member of this bot.")
    try:
        chat_staff.conversation_take_over(conversation=conversation, user=user)
        message = chat_staff.staff_message_send(conversation=conversation, user=user, text=body.text.strip())
    except (chat_staff.ConversationTakenByOther, chat_staff.ConversationNotTakenOver):
        raise HttpError(409, "Another staff member has taken this conversation over.") from None
    [payload] = [m for m in conversation_history(conversation=conversation, limit=5) if m["id"] == message.id]
    return Status(201, payload)
