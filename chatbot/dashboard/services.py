"""Writes of the dashboard: taking conversations over, staff messages, approved answers, staff, knowledge sources.
And the events that keep every open dashboard live, sent once the writes are committed."""

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from chatbot.dashboard.permissions import staff_name
from chatbot.dashboard.protocol import (
    ADMINS_GROUP,
    ConversationEvent,
    ConversationRow,
    DashboardMessage,
    HandoffEvent,
    MessageEvent,
    bot_group,
)
from chatbot.models import ApprovedAnswer, Bot, Conversation, Message, StaffMember
from chatbot.relay import relay
from knowledge.models import Source

logger = logging.getLogger(__name__)


class ConversationTakenByOther(Exception):
    """Another staff member has this conversation."""


class ConversationNotTakenOver(Exception):
    """Staff messages need the conversation to be taken over (by this staff member) first."""


# --- live events ---


def _send(*, bot_id: int, event: dict) -> None:
    # The dashboards are a convenience: a Redis hiccup must not fail the visitor's message.
    try:
        for group in (bot_group(bot_id), ADMINS_GROUP):
            relay().group_send(group, event)
    except Exception:
        logger.exception("could not notify the dashboards of bot %s", bot_id)


def _visitor_send(*, conversation: Conversation, frame: dict) -> None:
    try:
        relay().group_send(conversation.group_name, {"type": "chat.frame", "frame": frame})
    except Exception:
        logger.exception("could not send a %s frame to conversation %s", frame.get("type"), conversation.id)


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
        taken_over_by=staff_name(conversation.taken_over_by) if conversation.taken_over_by else None,
    )


def dashboard_message(message: Message) -> DashboardMessage:
    if message.role == Message.Role.STAFF:
        author = staff_name(message.staff_user) if message.staff_user else "Staff"
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
    conversation = Conversation.objects.select_related("bot", "taken_over_by").get(pk=conversation.pk)
    _send(
        bot_id=conversation.bot_id,
        event=ConversationEvent(type="dashboard.conversation", conversation=conversation_row(conversation)),
    )


def dashboard_message_notify(*, message_id: int) -> None:
    """A message was saved: the conversation list moves it to the top, an open transcript shows the message."""
    message = (
        Message.objects.select_related("conversation__bot", "conversation__taken_over_by", "staff_user")
        .filter(id=message_id)
        .first()
    )
    if message is None:
        return
    conversation = message.conversation
    _send(
        bot_id=conversation.bot_id,
        event=MessageEvent(
            type="dashboard.message", conversation_id=conversation.id, message=dashboard_message(message)
        ),
    )
    preview = message.text if message.role == Message.Role.VISITOR else None
    _send(
        bot_id=conversation.bot_id,
        event=ConversationEvent(
            type="dashboard.conversation", conversation=conversation_row(conversation, preview=preview)
        ),
    )


def dashboard_handoff_notify(*, conversation: Conversation, status: str, summary: str) -> None:
    _send(
        bot_id=conversation.bot_id,
        event=HandoffEvent(
            type="dashboard.handoff",
            conversation_id=conversation.id,
            url=reverse("dashboard:transcript", args=[conversation.id]),
            bot=conversation.bot.name,
            status=status,
            summary=summary,
        ),
    )
    dashboard_conversation_notify(conversation=conversation)


# --- takeover ---


@transaction.atomic
def conversation_take_over(*, conversation: Conversation, user) -> Conversation:
    """The staff member answers from now on: the bot stays silent and the visitor sees who joined."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.taken_over_by_id == user.id:
        return conversation
    if conversation.taken_over_by_id is not None:
        raise ConversationTakenByOther
    conversation.taken_over_by = user
    conversation.save(update_fields=["taken_over_by"])
    name = staff_name(user)
    transaction.on_commit(
        lambda: _visitor_send(conversation=conversation, frame={"type": "staff_joined", "name": name})
    )
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
    transaction.on_commit(lambda: _visitor_send(conversation=conversation, frame={"type": "staff_left"}))
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
    frame = {"type": "staff_message", "message_id": message.id, "name": staff_name(user), "text": text}
    transaction.on_commit(lambda: _visitor_send(conversation=conversation, frame=frame))
    transaction.on_commit(lambda: dashboard_message_notify(message_id=message.id))
    return message


# --- approved answers ---


@transaction.atomic
def approved_answer_add(*, bot: Bot, question: str, answer: str, user=None, add_faq: bool = True) -> ApprovedAnswer:
    """An answer the bot returns verbatim to questions close to `question`; also an FAQ entry of its knowledge base
    (ingested after commit), so questions merely near it find the answer through retrieval."""
    from chatbot.dashboard.quality import question_embedding

    approved = ApprovedAnswer.objects.create(
        bot=bot,
        question=question.strip(),
        answer=answer.strip(),
        embedding=question_embedding(question),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    if add_faq and bot.knowledge_base_id is not None:
        source_add_and_ingest(bot=bot, kind=Source.Kind.FAQ, question=approved.question, answer=approved.answer)
    return approved


def approved_answer_use(*, approved_answer: ApprovedAnswer) -> None:
    ApprovedAnswer.objects.filter(id=approved_answer.id).update(times_used=F("times_used") + 1)


def approved_answer_delete(*, approved_answer: ApprovedAnswer) -> None:
    approved_answer.delete()


# --- knowledge sources ---


def source_add_and_ingest(*, bot: Bot, kind: str, **fields) -> Source:
    """Add a source to the bot's knowledge base and queue its ingestion once committed."""
    from knowledge import services as knowledge
    from knowledge.tasks import ingest_source

    base = bot.knowledge_base
    if kind == Source.Kind.FAQ:
        source = knowledge.source_add_faq(knowledge_base=base, question=fields["question"], answer=fields["answer"])
    elif kind == Source.Kind.FILE:
        source = knowledge.source_add_file(knowledge_base=base, filename=fields["filename"], data=fields["data"])
    else:
        source = knowledge.source_add_url(
            knowledge_base=base,
            url=fields["url"],
            sitemap=kind == Source.Kind.SITEMAP,
            resync_every_hours=fields.get("resync_every_hours"),
            **{name: fields[name] for name in ("title", "same_host_only", "max_pages") if fields.get(name) is not None},
        )
    transaction.on_commit(lambda: ingest_source.delay(source.id))
    return source


def source_resync(*, source: Source) -> None:
    from knowledge.tasks import ingest_source

    Source.objects.filter(id=source.id).update(status=Source.Status.PENDING, documents_done=0)
    transaction.on_commit(lambda: ingest_source.delay(source.id))


# --- staff ---


@transaction.atomic
def staff_member_save(
    *,
    username: str,
    role: str,
    bots: list[Bot] | None = None,
    display_name: str = "",
    can_view_leads: bool = False,
    password: str | None = None,
    email: str = "",
) -> StaffMember:
    """Create or update a dashboard user with a role; `password` (when given) is set."""
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    if password:
        user.set_password(password)
        user.save(update_fields=["password"])
    member, _ = StaffMember.objects.update_or_create(
        user=user, defaults={"role": role, "display_name": display_name, "can_view_leads": can_view_leads}
    )
    if bots is not None:
        member.bots.set(bots)
    return member
