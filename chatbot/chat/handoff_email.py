"""Email to the staff on duty for a bot when a visitor first asks for a person, with a link to the conversation:
the dashboard's alert reaches only those who have it open."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db.models import Q
from django.urls import reverse

from chatbot.models import Bot, Conversation, StaffMember

logger = logging.getLogger(__name__)


def staff_on_duty_emails(*, bot: Bot) -> list[str]:
    """Who is told: the bot's agents with an email address; without any, the administrators; without any, the
    bot's notification address."""
    agents = StaffMember.objects.filter(role=StaffMember.Role.AGENT, bots=bot, user__is_active=True)
    emails = sorted({email for email in agents.values_list("user__email", flat=True) if email})
    if not emails:
        admins = get_user_model().objects.filter(
            Q(is_superuser=True) | Q(staff_member__role=StaffMember.Role.ADMIN), is_active=True
        )
        emails = sorted({email for email in admins.values_list("email", flat=True) if email})
    if not emails and bot.notification_email:
        emails = [bot.notification_email]
    return emails


def handoff_email_send(*, conversation_id: str, summary: str) -> int:
    """Send the email now; returns how many people it went to. Raises on SMTP errors (the task retries)."""
    conversation = Conversation.objects.select_related("bot").filter(id=conversation_id).first()
    if conversation is None:
        return 0
    recipients = staff_on_duty_emails(bot=conversation.bot)
    if not recipients:
        logger.info("no staff email to tell of the handoff request in conversation %s", conversation_id)
        return 0
    who = conversation.visitor_name or conversation.visitor_email or "A visitor"
    link = settings.SITE_URL + reverse("dashboard:transcript", args=[conversation.id])
    body = "\n".join(
        [
            f"{who} asks to talk to a person in the chat of {conversation.bot.name}.",
            "",
            summary,
            "",
            f"Open the conversation: {link}",
        ]
    )
    message = EmailMessage(
        subject=f"[{conversation.bot.name}] {who} asks for a person",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        reply_to=[conversation.visitor_email] if conversation.visitor_email else None,
    )
    message.send()
    return len(recipients)
