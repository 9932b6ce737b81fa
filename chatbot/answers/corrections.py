"""Corrections: the answer a bot should have given, written by staff on its transcript and kept with who wrote it and
when. The brand-voice export (chatbot.answers.finetune) reads exactly what is saved here, and one click turns a
correction into an approved answer, given verbatim to questions like the one it corrects."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chatbot.answers.approved import approved_answer_add
from chatbot.models import ApprovedAnswer, Conversation, Message

MAX_CORRECTION_CHARS = 4000


class NotCorrectable(ValueError):
    """This message cannot be corrected (or approved) as asked; the message says why."""


@transaction.atomic
def message_correct(*, message: Message, user, text: str) -> Message:
    """Save `text` as the answer bot message `message` should have given; an empty text removes the correction."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.role != Message.Role.BOT or message.status == Message.Status.STREAMING:
        raise NotCorrectable("Only a finished bot answer can be corrected.")
    # Stored as exported: the export strips, so what staff see saved is what a trainer reads.
    text = text.strip()
    if len(text) > MAX_CORRECTION_CHARS:
        raise NotCorrectable(f"A correction can be at most {MAX_CORRECTION_CHARS} characters.")
    message.corrected_text = text
    message.corrected_by = user if text else None
    message.corrected_at = timezone.now() if text else None
    message.save(update_fields=["corrected_text", "corrected_by", "corrected_at"])
    return message


@transaction.atomic
def correction_approve(*, message: Message, user) -> ApprovedAnswer:
    """The message's correction as an approved answer to the visitor question it replied to (once per text)."""
    message = Message.objects.select_related("in_reply_to", "conversation__bot").get(pk=message.pk)
    if not message.corrected_text:
        raise NotCorrectable("Write the correction first.")
    question = message.in_reply_to.text.strip() if message.in_reply_to else ""
    if not question:
        raise NotCorrectable("This answer does not reply to a visitor's question.")
    existing = ApprovedAnswer.objects.filter(source_message=message, answer=message.corrected_text).first()
    if existing is not None:
        return existing
    approved = approved_answer_add(
        bot=message.conversation.bot, question=question, answer=message.corrected_text, user=user
    )
    approved.source_message = message
    approved.save(update_fields=["source_message"])
    return approved


def corrections_approved(*, conversation: Conversation) -> set[int]:
    """The ids of the conversation's bot answers whose current correction is an approved answer."""
    return set(
        ApprovedAnswer.objects.filter(
            source_message__conversation=conversation, answer=F("source_message__corrected_text")
        ).values_list("source_message_id", flat=True)
    )
