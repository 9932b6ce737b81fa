"""A one-line summary and a sentiment for each finished conversation, written by the bot's own model.

Finished: no message for INSIGHTS_IDLE_MINUTES, or marked resolved, and no answer streaming. A conversation is
read again only when something was written after its last summary. Newest first, until the run's budget is spent
(the rest waits for the next run)."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from chatbot.insights.asking import BudgetExhausted, InsightModel, ModelUnavailable
from chatbot.models import Bot, Conversation, ConversationInsight, Message
from inference.analysis import SUMMARY_MAX_NEW_TOKENS, summary_messages, summary_parse
from inference.client import estimate_tokens

logger = logging.getLogger(__name__)

LOOKBACK_DAYS = 30
MAX_CONVERSATIONS_PER_RUN = 500
MAX_MESSAGES = 80
SPEAKERS = {Message.Role.VISITOR: "Visitor", Message.Role.BOT: "Assistant", Message.Role.STAFF: "Staff"}


@dataclass
class SummariesWritten:
    count: int = 0
    budget_exhausted: bool = False
    model_error: str = ""


def conversations_to_summarise(*, bot: Bot, now=None) -> list[Conversation]:
    """The bot's finished conversations of the last LOOKBACK_DAYS without an up-to-date summary, newest first."""
    now = now or timezone.now()
    idle_since = now - timedelta(minutes=settings.INSIGHTS_IDLE_MINUTES)
    current = ConversationInsight.objects.filter(
        conversation=OuterRef("pk"), analysed_until__gte=OuterRef("last_message_at")
    )
    return list(
        Conversation.objects.filter(bot=bot, last_message_at__gte=now - timedelta(days=LOOKBACK_DAYS))
        .filter(Q(last_message_at__lt=idle_since) | Q(resolved_at__isnull=False))
        .filter(Exists(Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.VISITOR)))
        .exclude(Exists(Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)))
        .exclude(Exists(current))
        .order_by(F("last_message_at").desc(), "id")[:MAX_CONVERSATIONS_PER_RUN]
    )


def _lines(conversation: Conversation) -> list[tuple[str, str]]:
    messages = conversation.messages.order_by("created_at", "id").only("role", "text")
    if (count := messages.count()) > MAX_MESSAGES:
        # The first and the last ones: the prompt leaves out the middle anyway.
        half = MAX_MESSAGES // 2
        picked = list(messages[:half]) + list(messages[count - half :])
    else:
        picked = list(messages)
    return [(SPEAKERS.get(m.role, "Staff"), m.text) for m in picked if m.text.strip()]


def conversation_summarise(*, conversation: Conversation, model: InsightModel) -> ConversationInsight | None:
    """Ask the model about one conversation and save what it said (None: the conversation was deleted meanwhile).
    Raises BudgetExhausted or ModelUnavailable."""
    analysed_until = conversation.last_message_at
    room = model.prompt_room(max_new_tokens=SUMMARY_MAX_NEW_TOKENS)
    messages = summary_messages(lines=_lines(conversation), max_prompt_tokens=room, count_tokens=estimate_tokens)
    reply = model.ask(messages, max_new_tokens=SUMMARY_MAX_NEW_TOKENS)
    summary, sentiment = summary_parse(reply.text)
    try:
        with transaction.atomic():
            insight, _ = ConversationInsight.objects.update_or_create(
                conversation_id=conversation.id,
                defaults={
                    "summary": summary,
                    "sentiment": sentiment,
                    "model": reply.model,
                    "analysed_until": analysed_until,
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                },
            )
    except IntegrityError:
        return None  # deleted while the model read it (a visitor's data, or past retention): nothing to keep
    return insight


def conversations_summarise(*, bot: Bot, model: InsightModel) -> SummariesWritten:
    """Summarise the bot's finished conversations while the budget lasts, and while the model server answers."""
    written = SummariesWritten()
    for conversation in conversations_to_summarise(bot=bot):
        try:
            insight = conversation_summarise(conversation=conversation, model=model)
        except BudgetExhausted:
            written.budget_exhausted = True
            break
        except ModelUnavailable as error:
            written.model_error = str(error)
            break
        written.count += insight is not None
    return written
