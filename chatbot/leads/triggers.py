"""When the lead form is offered: before the chat, after the visitor's Nth message, when the bot could not answer,
when nobody can take a handoff, or when the visitor sounds like buying. A form is offered once per conversation
(it stays on screen and comes back on reconnect), never after it was dismissed or a lead was left."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from chatbot.leads.form import LeadForm, lead_form_for, lead_form_payload
from chatbot.models import Conversation, Lead, Message
from chatbot.realtime.protocol import LeadFormFrame, LeadFormReason, frame_event, lead_form_frame
from chatbot.realtime.relay import relay

# Buying intent: words and phrases in any of our languages (a visitor may write English on a French site).
INTENT_KEYWORDS = {
    "en": ["pricing", "price", "prices", "quote", "quotation", "buy", "buying", "purchase", "demo", "sales",
           "how much", "cost", "costs", "plans", "subscription", "trial", "enterprise"],
    "fr": ["prix", "tarif", "tarifs", "tarification", "devis", "acheter", "achat", "démo", "démonstration",
           "commercial", "commerciaux", "combien", "abonnement", "essai"],
    "de": ["preis", "preise", "preisliste", "angebot", "kaufen", "kauf", "vertrieb", "kosten", "wie viel",
           "abo", "abonnement", "testversion"],
}  # fmt: skip


def buying_intent_detect(*, text: str, extra_keywords: Iterable[str] = ()) -> bool:
    """Whether a visitor's message sounds like buying: a keyword or phrase of any language, as whole words."""
    words = [keyword for keywords in INTENT_KEYWORDS.values() for keyword in keywords]
    words += list(extra_keywords)
    pattern = r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + r")(?!\w)"
    return re.search(pattern, text.lower()) is not None


def _lead_captured(conversation: Conversation) -> bool:
    return Lead.objects.filter(conversation=conversation).exists()


def _offer(conversation: Conversation, form: LeadForm, reason: LeadFormReason, *, again: bool) -> LeadFormFrame | None:
    """Record the offer and build its frame. A form is offered once per conversation (it stays on screen, and
    comes back on reconnect) unless `again`; never after the visitor dismissed it (unless `again`) or left a lead."""
    if not form.trigger_on(reason) or _lead_captured(conversation):
        return None
    offers = Conversation.objects.filter(pk=conversation.pk)
    if not again:
        offers = offers.filter(lead_form_reason="", lead_form_dismissed_at__isnull=True)
    if not offers.update(lead_form_reason=reason):
        return None  # already offered (perhaps at the same moment by another process) or dismissed
    conversation.lead_form_reason = reason
    return lead_form_frame(reason=reason, form=lead_form_payload(form))


def lead_form_on_hello(*, conversation: Conversation) -> LeadFormFrame | None:
    """After `ready`: the form offered earlier and still open (the widget lost it when it reconnected), or the
    form before the chat starts."""
    form = lead_form_for(conversation=conversation)
    if form is None or conversation.lead_form_dismissed_at is not None or _lead_captured(conversation):
        return None
    if conversation.lead_form_reason:
        return lead_form_frame(reason=conversation.lead_form_reason, form=lead_form_payload(form))
    return _offer(conversation, form, "before_chat", again=False)


def lead_form_after_visitor_message(*, conversation: Conversation) -> LeadFormFrame | None:
    """After the visitor's Nth message to the bot (`triggers.after_messages`); never while staff have taken the
    conversation over."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    after = form.triggers.get("after_messages") or 0
    # While staff have the conversation the visitor is talking to them: no form then, and what the visitor said to
    # them does not count. The messages that count are those the bot answered (each has a reply in_reply_to it).
    if not after or Conversation.objects.filter(pk=conversation.pk, taken_over_by__isnull=False).exists():
        return None
    if conversation.messages.filter(role=Message.Role.BOT, in_reply_to__isnull=False).count() < after:
        return None
    return _offer(conversation, form, "after_messages", again=False)


def lead_form_on_handoff_unavailable(*, conversation: Conversation) -> LeadFormFrame | None:
    """The visitor asked for a person and nobody is available: offered even if shown or dismissed before."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    return _offer(conversation, form, "no_human", again=True)


def _cannot_answer(outcome: Any) -> bool:
    status = getattr(outcome, "status", "")
    return getattr(outcome, "finish_reason", "") == "no_relevant_passages" or (
        status == Message.Status.RETRIEVAL_ONLY and not getattr(outcome, "citations", None)
    )


def lead_form_offer_reason(*, conversation: Conversation, question: str, outcome: Any) -> LeadFormReason | None:
    """Why the bot should offer the form after this answer, if it should: it could not answer (strict mode found
    nothing, or the model was down and no passage was relevant), or the question shows buying intent.
    `outcome` is the answer pipeline's AnswerOutcome (read: status, finish_reason, citations)."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    if form.trigger_on("cannot_answer") and _cannot_answer(outcome):
        return "cannot_answer"
    if form.trigger_on("buying_intent") and buying_intent_detect(text=question, extra_keywords=form.intent_keywords):
        return "buying_intent"
    return None


def lead_form_after_answer(*, conversation: Conversation, question: str, outcome: Any) -> LeadFormReason | None:
    """For the answer pipeline, after it sent `chat.done`: offers the form to every open widget of the
    conversation when the answer calls for it. Returns the reason it was offered, or None."""
    reason = lead_form_offer_reason(conversation=conversation, question=question, outcome=outcome)
    if reason is None:
        return None
    form = lead_form_for(conversation=conversation)
    frame = _offer(conversation, form, reason, again=False)
    if frame is None:
        return None
    relay().group_send(conversation.group_name, frame_event(frame))
    return reason


def lead_form_dismiss(*, conversation: Conversation) -> None:
    Conversation.objects.filter(pk=conversation.pk, lead_form_dismissed_at__isnull=True).update(
        lead_form_dismissed_at=timezone.now()
    )
