"""Staff in a conversation: taking it over (the bot stays silent), writing to the visitor, handing it back. What
the visitor sees of it arrives on their widget live."""

import logging

from django.db import transaction
from django.utils import timezone

from chatbot.chat.staff_feed import dashboard_conversation_notify, dashboard_message_notify
from chatbot.models import Conversation, Message, staff_display_name
from chatbot.realtime.protocol import (
    ServerFrame,
    frame_event,
    staff_joined_frame,
    staff_left_frame,
    staff_message_frame,
)
from chatbot.realtime.relay import relay
from chatbot.webhooks.events import message_created_emit

logger = logging.getLogger(__name__)


class ConversationTakenByOther(Exception):
    """Another staff member has this conversation."""


class ConversationNotTakenOver(Exception):
    """Staff messages need the conversation to be taken over (by this staff member) first."""


def _visitor_send(*, conversation: Conversation, frame: ServerFrame) -> None:
    try:
        relay().group_send(conversation.group_name, frame_event(frame))
    except Exception:
        logger.exception("could not send a %s frame to conversation %s", frame.get("type"), conversation.id)


@transaction.atomic
def conversation_take_over(*, conversation: Conversation, user) -> Conversation:
    """The staff member answers from now on: the bot stays silent and the visitor sees who joined. A conversation
    nobody was assigned to becomes theirs (the inbox's "Mine"); one assigned to a colleague stays assigned."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.taken_over_by_id == user.id:
        return conversation
    if conversation.taken_over_by_id is not None:
        raise ConversationTakenByOther
    conversation.taken_over_by = user
    changed = ["taken_over_by"]
    if conversation.assigned_to_id is None:
        conversation.assigned_to = user
        changed.append("assigned_to")
    conversation.save(update_fields=changed)
    frame = staff_joined_frame(name=staff_display_name(user))
    transaction.on_commit(lambda: _visitor_send(conversation=conversation, frame=frame))
    transaction.on_commit(lambda: dashboard_conversation_notify(conversation=conversation))
    return conversation


@transaction.atomic
def conversation_hand_back(*, conversation: Conversation, user, force: bool = False) -> Conversation:
    """The bot answers again. Only the staff member who took over can hand back, unless `force` (administrators)."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.taken_over_by_id is None:
        return conversation
    if conversation.taken_over_by_id != user.id and not force:
        raise ConversationTakenByOther
    conversation.taken_over_by = None
    conversation.save(update_fields=["taken_over_by"])
    transaction.on_commit(lambda: _visitor_send(conversation=conversation, frame=staff_left_frame()))
    transaction.on_commit(lambda: dashboard_conversation_notify(conversation=conversation))
    return conversation


@transaction.atomic
def staff_message_send(*, conversation: Conversation, user, text: str) -> Message:
    """A staff member's message, in a conversation they have taken over; it reaches the visitor's widget live."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.taken_over_by_id != user.id:
        raise ConversationNotTakenOver
    message = Message.objects.create(conversation=conversation, role=Message.Role.STAFF, text=text, staff_user=user)
    conversation.last_message_at = timezone.now()
    conversation.save(update_fields=["last_message_at"])
    frame = staff_message_frame(message_id=message.id, name=staff_display_name(user), text=text)
    transaction.on_commit(lambda: _visitor_send(conversation=conversation, frame=frame))
    transaction.on_commit(lambda: dashboard_message_notify(message_id=message.id))
    message_created_emit(bot=conversation.bot, message_id=message.id)
    return message
