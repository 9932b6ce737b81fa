"""A visitor's data: deleting all of it on request, and deleting leads past their bot's retention period."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chatbot.models import Bot, Conversation, Lead, Message

logger = logging.getLogger(__name__)


@dataclass
class VisitorDataDeleted:
    conversations: int = 0
    messages: int = 0
    leads: int = 0


@transaction.atomic
def visitor_data_delete(*, bot: Bot, email: str | None = None, visitor_id: str | None = None) -> VisitorDataDeleted:
    """Delete everything a visitor left with a bot: their leads (with their deliveries), and every conversation
    (with its messages) of the visitor, found by visitor id or through their leads' conversations."""
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
