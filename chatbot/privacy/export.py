"""A visitor's data as one JSON document: the answer to an access request (docs/leads.md, "Privacy"). The same
visitor, found the same way, as `visitor_data_delete` deletes: what is exported is what a deletion would remove.

Staff's internal notes are not part of it (they are never shown to the visitor), nor are an answer's trace, its
prompt or a staff correction (how Parley works, not what the visitor left or was told)."""

from typing import Any

from django.utils import timezone

from chatbot.models import Bot, ConversationInsight, Message, staff_display_name
from chatbot.privacy.services import visitor_data_find

FORMAT = "parley.visitor-data"
VERSION = 1


def _when(value) -> str | None:
    return value.isoformat() if value else None


def _author(message: Message, bot: Bot) -> str:
    if message.role == Message.Role.STAFF:
        return staff_display_name(message.staff_user) if message.staff_user else "Staff"
    return "Visitor" if message.role == Message.Role.VISITOR else bot.name


def visitor_data_export(*, bot: Bot, email: str | None = None, visitor_id: str | None = None) -> dict[str, Any]:
    """Everything the visitor left with the bot and was told by it: their conversations with every message, what the
    bot's model noted of each (summary, sentiment), and their leads with the consent they gave."""
    found = visitor_data_find(bot=bot, email=email, visitor_id=visitor_id)
    insights = {
        insight.conversation_id: insight
        for insight in ConversationInsight.objects.filter(conversation__in=found.conversations)
    }
    conversations = []
    for conversation in found.conversations.order_by("started_at", "id").prefetch_related("messages__staff_user"):
        insight = insights.get(conversation.id)
        conversations.append(
            {
                "id": conversation.id,
                "visitor_id": conversation.visitor_id,
                "started_at": _when(conversation.started_at),
                "last_message_at": _when(conversation.last_message_at),
                "page_url": conversation.page_url,
                "referrer": conversation.referrer,
                "language": conversation.language,
                "user_agent": conversation.user_agent,
                "asked_for_a_person_at": _when(conversation.handoff_requested_at),
                "summary": insight.summary if insight else "",
                "sentiment": insight.sentiment if insight else "",
                "messages": [
                    {
                        "id": message.id,
                        "from": message.role,
                        "author": _author(message, bot),
                        "text": message.text,
                        "sent_at": _when(message.created_at),
                        "feedback": message.feedback or None,
                    }
                    for message in sorted(conversation.messages.all(), key=lambda m: (m.created_at, m.id))
                ],
            }
        )
    leads = [
        {
            "id": lead.id,
            "conversation_id": lead.conversation_id,
            "created_at": _when(lead.created_at),
            "updated_at": _when(lead.updated_at),
            "email": lead.email,
            "name": lead.name,
            "fields": lead.data,
            "page_url": lead.page_url,
            "referrer": lead.referrer,
            "utm": lead.utm,
            "consent_text": lead.consent_text,
            "consent_at": _when(lead.consent_at),
        }
        for lead in found.leads.order_by("created_at", "id")
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(timespec="seconds"),
        "bot": {"slug": bot.slug, "name": bot.name},
        "asked_for": {"email": (email or "").strip() or None, "visitor_id": (visitor_id or "").strip() or None},
        "visitor_ids": sorted({c["visitor_id"] for c in conversations}),
        "conversations": conversations,
        "leads": leads,
    }
