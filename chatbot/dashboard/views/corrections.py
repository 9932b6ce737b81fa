"""Correcting a bot answer from its transcript, and making the correction an approved answer in one click."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from chatbot.answers.corrections import NotCorrectable, correction_approve, message_correct
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.inbox import conversation_for_staff
from chatbot.models import Message


def _answer_of(request, conversation_id: str, message_id: int) -> Message:
    conversation = conversation_for_staff(request, conversation_id)
    return get_object_or_404(Message, id=message_id, conversation=conversation)


def _back(message: Message):
    return redirect(reverse("dashboard:transcript", args=[message.conversation_id]) + f"#message-{message.id}")


@require_POST
@staff_required
def correct(request, conversation_id: str, message_id: int):
    message = _answer_of(request, conversation_id, message_id)
    try:
        message = message_correct(message=message, user=request.user, text=request.POST.get("corrected_text", ""))
        if request.POST.get("action") == "approve":
            correction_approve(message=message, user=request.user)
            messages.success(request, "Correction saved, and the bot now gives it to questions like this one.")
        elif message.corrected_text:
            messages.success(request, "Correction saved: the brand-voice export includes it.")
        else:
            messages.success(request, "Correction removed.")
    except NotCorrectable as error:
        messages.error(request, str(error))
    return _back(message)


@require_POST
@staff_required
def approve(request, conversation_id: str, message_id: int):
    message = _answer_of(request, conversation_id, message_id)
    try:
        correction_approve(message=message, user=request.user)
    except NotCorrectable as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "The bot now gives this correction to questions like this one.")
    return _back(message)
