"""The inbox's writes and the reads behind them: assigning a conversation to a colleague, marking it resolved,
internal notes, and the team's saved replies. Every open dashboard that sees the bot hears of an assignment or a
resolution at once (the conversation list updates its row)."""

import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chatbot.chat.staff_feed import dashboard_conversation_notify
from chatbot.dashboard import permissions
from chatbot.models import Bot, Conversation, ConversationNote, SavedReply, StaffMember, staff_colleague_name

MAX_NOTE_CHARS = 4000
MAX_REPLY_CHARS = 4000
SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class AssigneeNotAllowed(Exception):
    """The colleague cannot see this conversation's bot, so they cannot own it."""


class InvalidInput(ValueError):
    """What the staff member typed cannot be saved; the message says why."""


# --- assigning ---


@dataclass(frozen=True)
class Colleague:
    id: int
    name: str


def colleagues_for(*, bot: Bot) -> list[Colleague]:
    """Who may own a conversation of `bot`: active administrators (and superusers), and the bot's agents."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(staff_member__role=StaffMember.Role.ADMIN)
            | Q(staff_member__role=StaffMember.Role.AGENT, staff_member__bots=bot)
        )
        .select_related("staff_member")
        .distinct()
    )
    return sorted(
        (Colleague(id=user.id, name=staff_colleague_name(user)) for user in users), key=lambda c: c.name.lower()
    )


@transaction.atomic
def conversation_assign(*, conversation: Conversation, assignee_id: int | None) -> Conversation:
    """Give the conversation to a colleague (None: to nobody). The colleague must be able to see its bot."""
    conversation = Conversation.objects.select_for_update().select_related("bot").get(pk=conversation.pk)
    assignee = None
    if assignee_id is not None:
        assignee = get_user_model().objects.filter(id=assignee_id, is_active=True).first()
        if assignee is None or not permissions.conversation_visible(assignee, conversation):
            raise AssigneeNotAllowed
    if conversation.assigned_to_id != assignee_id:
        conversation.assigned_to = assignee
        conversation.save(update_fields=["assigned_to"])
        transaction.on_commit(lambda: dashboard_conversation_notify(conversation=conversation))
    return conversation


# --- resolving ---


@transaction.atomic
def conversation_resolve(*, conversation: Conversation, user) -> Conversation:
    """Mark the conversation resolved: it leaves the open inbox until the visitor writes again."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.resolved_at is None:
        conversation.resolved_at, conversation.resolved_by = timezone.now(), user
        conversation.save(update_fields=["resolved_at", "resolved_by"])
        transaction.on_commit(lambda: dashboard_conversation_notify(conversation=conversation))
    return conversation


@transaction.atomic
def conversation_reopen(*, conversation: Conversation) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.resolved_at is not None:
        conversation.resolved_at, conversation.resolved_by = None, None
        conversation.save(update_fields=["resolved_at", "resolved_by"])
        transaction.on_commit(lambda: dashboard_conversation_notify(conversation=conversation))
    return conversation


# --- internal notes ---


def note_add(*, conversation: Conversation, user, text: str) -> ConversationNote:
    """A note for colleagues on this conversation; the visitor never sees it."""
    text = text.strip()
    if not text or len(text) > MAX_NOTE_CHARS:
        raise InvalidInput(f"Write a note (at most {MAX_NOTE_CHARS} characters).")
    return ConversationNote.objects.create(conversation=conversation, author=user, text=text)


def notes_of(*, conversation: Conversation) -> list[ConversationNote]:
    return list(conversation.notes.select_related("author__staff_member").order_by("created_at", "id"))


# --- saved replies ---


def saved_reply_save(*, bot: Bot | None, shortcut: str, text: str, user) -> SavedReply:
    """A reply staff insert by typing `/shortcut` in the takeover box; `bot` None: for every bot. Saving a shortcut
    that exists (for the same bot) replaces its text."""
    shortcut = shortcut.strip().lstrip("/").lower()
    text = text.strip()
    if not SHORTCUT.match(shortcut):
        raise InvalidInput("A shortcut is 1 to 40 lower-case letters, digits, '-' or '_', such as 'refund'.")
    if not text or len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"Write the reply (at most {MAX_REPLY_CHARS} characters).")
    try:
        with transaction.atomic():
            reply, _ = SavedReply.objects.update_or_create(
                bot=bot, shortcut=shortcut, defaults={"text": text, "created_by": user}
            )
    except IntegrityError:  # two staff saving the same new shortcut at once: the other one won
        reply = SavedReply.objects.get(bot=bot, shortcut=shortcut)
    return reply


def saved_reply_delete(*, reply: SavedReply) -> None:
    reply.delete()


def saved_replies_visible(*, bots) -> list[SavedReply]:
    """The replies of the bots in `bots` and those for every bot."""
    return list(SavedReply.objects.filter(Q(bot__isnull=True) | Q(bot__in=bots)).select_related("bot"))


def saved_replies_for(*, bot: Bot) -> list[dict[str, str]]:
    """The replies available in a conversation of `bot`, by shortcut; the bot's own win over those for every bot."""
    by_shortcut: dict[str, str] = {}
    for reply in SavedReply.objects.filter(Q(bot__isnull=True) | Q(bot=bot)):
        if reply.bot_id is not None or reply.shortcut not in by_shortcut:
            by_shortcut[reply.shortcut] = reply.text
    return [{"shortcut": shortcut, "text": text} for shortcut, text in sorted(by_shortcut.items())]
