"""A visitor's data: finding and deleting all of it on request, and deleting leads and conversations past their bot's
retention periods."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from chatbot.models import Bot, Conversation, Lead, Message

logger = logging.getLogger(__name__)


@dataclass
class VisitorDataDeleted:
    conversations: int = 0
    messages: int = 0
    leads: int = 0


@dataclass
class VisitorData:
    """Everything a visitor left with a bot: their leads and their conversations (with the messages)."""

    leads: QuerySet[Lead]
    conversations: QuerySet[Conversation]


def visitor_data_find(*, bot: Bot, email: str | None = None, visitor_id: str | None = None) -> VisitorData:
    """A visitor's data with a bot, found by visitor id or through the email of their leads: every conversation of
    the visitor (by visitor id, or the visitor ids of their leads' conversations) and every lead of theirs."""
    email = (email or "").strip()
    visitor_id = (visitor_id or "").strip()
    if not email and not visitor_id:
        raise ValueError("give an email or a visitor id")
    leads = Lead.objects.filter(bot=bot).filter(
        (Q(email__iexact=email) if email else Q(pk__in=[]))
        | (Q(conversation__visitor_id=visitor_id) if visitor_id else Q(pk__in=[]))
    )
    visitor_ids = set(leads.exclude(conversation=None).values_list("conversation__visitor_id", flat=True))
    if visitor_id:
        visitor_ids.add(visitor_id)
    conversations = Conversation.objects.filter(bot=bot, visitor_id__in=visitor_ids)
    # Leads of this visitor in any of their conversations, even one left with another email.
    leads = Lead.objects.filter(Q(pk__in=leads.values("pk")) | Q(conversation__in=conversations))
    return VisitorData(leads=leads, conversations=conversations)


@transaction.atomic
def visitor_data_delete(*, bot: Bot, email: str | None = None, visitor_id: str | None = None) -> VisitorDataDeleted:
    """Delete everything a visitor left with a bot (`visitor_data_find`): their leads (with their deliveries), and
    every conversation of theirs (with its messages, notes and insights)."""
    found = visitor_data_find(bot=bot, email=email, visitor_id=visitor_id)
    conversations, leads = found.conversations, found.leads
    result = VisitorDataDeleted(
        conversations=conversations.count(),
        messages=Message.objects.filter(conversation__in=conversations).count(),
        leads=leads.count(),
    )
    leads.delete()
    conversations.delete()
    logger.info(
        "deleted a visitor's data for bot %s: %s conversations, %s messages, %s leads",
        bot.slug, result.conversations, result.messages, result.leads,
    )  # fmt: skip
    return result


def leads_purge_expired(*, now: datetime | None = None) -> int:
    """Delete every lead older than its bot's `lead_retention_days`; returns how many."""
    now = now or timezone.now()
    deleted = 0
    for bot in Bot.objects.only("id", "lead_retention_days"):
        expired = Lead.objects.filter(bot=bot, created_at__lt=now - timedelta(days=bot.lead_retention_days))
        deleted += expired.delete()[1].get("chatbot.Lead", 0)
    return deleted


# Conversations deleted per transaction: a purge of years of history must not hold one huge transaction.
PURGE_BATCH = 500


def conversations_purge_expired(*, now: datetime | None = None, batch_size: int = PURGE_BATCH) -> int:
    """Delete every conversation (with its messages, notes and insights) whose last message is older than its bot's
    `conversation_retention_days`; bots without one keep theirs. Leads stay, under their own retention. Returns how
    many conversations were deleted."""
    now = now or timezone.now()
    deleted = 0
    for bot in Bot.objects.filter(conversation_retention_days__isnull=False).only("id", "conversation_retention_days"):
        expired = Conversation.objects.filter(
            bot=bot, last_message_at__lt=now - timedelta(days=bot.conversation_retention_days)
        )
        while ids := list(expired.order_by("last_message_at").values_list("id", flat=True)[:batch_size]):
            with transaction.atomic():
                Conversation.objects.filter(id__in=ids).delete()
            deleted += len(ids)
    if deleted:
        logger.info("deleted %s conversation(s) past their bot's retention period", deleted)
    return deleted
