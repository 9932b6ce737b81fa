"""Conversations: the dashboard's list (same filters, with paging), one with its messages, a staff reply."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from ninja import Query, Router, Status
from ninja.errors import HttpError

from chatbot.api.auth import bots_of, conversation_of, reaches_all_bots
from chatbot.api.schemas import (
    ConversationDetailOut,
    ConversationFilters,
    ConversationOut,
    ConversationPage,
    Error,
    HandBackIn,
    MessageOut,
    StaffReplyIn,
)
from chatbot.chat import staff as chat_staff
from chatbot.chat.conversations import conversation_history
from chatbot.dashboard import permissions, selectors
from chatbot.models import Conversation, Lead, Message, staff_colleague_name

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


@router.get(
    "/conversations",
    response={200: ConversationPage, 400: Error},
    summary="Conversations, most recent activity first, with the dashboard's filters",
)
def conversations_list(request, filters: Query[ConversationFilters]):
    if filters.cursor and filters.offset:
        raise HttpError(400, "Page with `cursor` or with `offset`, not both.")
    user = None
    if filters.view == "mine":
        user = request.auth.created_by
        if user is None:
            raise HttpError(
                400,
                "view=mine needs a key that belongs to a staff member (made in the dashboard, or with createapikey "
                "--created-by): this key has no creator.",
            )
    dashboard_filters = selectors.ConversationFilters(
        **filters.model_dump(exclude={"limit", "offset", "cursor"}) | {"q": filters.q.strip()}
    )
    try:
        page = selectors.conversation_page(
            bots=bots_of(request),
            filters=dashboard_filters,
            user=user,
            cursor=filters.cursor,
            limit=filters.limit,
            offset=filters.offset,  # deprecated, kept for existing scripts: the cursor costs the same at any depth
        )
    except selectors.BadCursor:
        raise HttpError(400, "That cursor is not valid: start again without one.") from None
    more = bool(page.next_cursor)
    return {
        "items": [conversation_out(row) for row in page.conversations],
        "next_cursor": page.next_cursor or None,
        "next_offset": filters.offset + filters.limit if more and not filters.cursor else None,
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


def _staff_writer(request, conversation: Conversation, staff_username: str):
    """Who writes through this key: its creator, or (only for a key that reaches every bot) the staff member it
    names. Either way a staff member who may see the conversation's bot; 400 otherwise."""
    creator = request.auth.created_by
    if not staff_username or (creator is not None and staff_username == creator.get_username()):
        if creator is None:
            raise HttpError(
                400,
                "This key has no creator to write as: name a staff member in `staff_username` (a key that reaches "
                "every bot only), or use a key that belongs to one (made in the dashboard, or with createapikey "
                "--created-by).",
            )
        user = creator
    else:
        if not reaches_all_bots(request):
            raise HttpError(
                400, "Only a key that reaches every bot may write as another staff member than its creator."
            )
        user = get_user_model().objects.filter(username=staff_username).first()
    if user is None or not user.is_active or not permissions.conversation_visible(user, conversation):
        name = staff_username or user.get_username()
        raise HttpError(400, f"{name!r} is not a staff member who may see this bot's conversations.")
    return user


@router.post(
    "/conversations/{conversation_id}/messages",
    response={201: MessageOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Write to the visitor as a staff member (taking the conversation over if nobody has)",
)
def staff_reply(request, conversation_id: str, body: StaffReplyIn):
    conversation = conversation_of(request, conversation_id, write=True)
    user = _staff_writer(request, conversation, body.staff_username.strip())
    try:
        chat_staff.conversation_take_over(conversation=conversation, user=user)
        message = chat_staff.staff_message_send(conversation=conversation, user=user, text=body.text.strip())
    except (chat_staff.ConversationTakenByOther, chat_staff.ConversationNotTakenOver):
        raise HttpError(409, "Another staff member has taken this conversation over.") from None
    [payload] = [m for m in conversation_history(conversation=conversation, limit=5) if m["id"] == message.id]
    return Status(201, payload)


@router.post(
    "/conversations/{conversation_id}/handback",
    response={200: ConversationOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Give the conversation back to the bot, as the dashboard's Hand back does",
)
def hand_back(request, conversation_id: str, body: HandBackIn | None = None):
    conversation = conversation_of(request, conversation_id, write=True)
    user = _staff_writer(request, conversation, (body.staff_username if body else "").strip())
    try:
        chat_staff.conversation_hand_back(conversation=conversation, user=user, force=permissions.is_admin(user))
    except chat_staff.ConversationTakenByOther:
        raise HttpError(
            409, "Only the staff member who took the conversation over (or an administrator) can hand it back."
        ) from None
    return conversation_read(request, conversation_id)
