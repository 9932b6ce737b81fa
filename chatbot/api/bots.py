"""Bots: read and update settings (validated by the dashboard's form), and their approved answers."""

from __future__ import annotations

import json

from django.db import transaction
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from chatbot.answers.approved import approved_answer_add, approved_answer_delete
from chatbot.api.auth import bot_of, bots_of
from chatbot.api.schemas import ApprovedAnswerIn, ApprovedAnswerOut, BotOut, BotPatch, Error, ValidationFailed
from chatbot.chat.widget import embed_snippet
from chatbot.dashboard.forms import BotForm
from chatbot.models import ApprovedAnswer, Bot

router = Router(tags=["bots"])


def bot_out(bot: Bot) -> dict:
    fields = {name: getattr(bot, name) for name in BotOut.model_fields if hasattr(bot, name)}
    return {**fields, "embed_snippet": embed_snippet(bot)}


def _form_value(value):
    """What the dashboard form's widget would post for a JSON value."""
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value)
    if value is None:
        return ""
    return value


@router.get("/bots", response=list[BotOut], summary="The bots the key reaches")
def bots_list(request):
    return [bot_out(bot) for bot in bots_of(request).order_by("name")]


@router.get("/bots/{slug}", response={200: BotOut, 404: Error}, summary="One bot's settings")
def bot_read(request, slug: str):
    return bot_out(bot_of(request, slug))


@router.patch(
    "/bots/{slug}",
    response={200: BotOut, 400: ValidationFailed, 403: Error, 404: Error},
    summary="Change a bot's settings (the same validation as the dashboard's form)",
)
def bot_update(request, slug: str, changes: BotPatch):
    bot = bot_of(request, slug, write=True)
    current = BotForm(instance=bot)
    data = {name: _form_value(current.initial.get(name)) for name in current.fields}
    data.update({name: _form_value(value) for name, value in changes.model_dump(exclude_unset=True).items()})
    form = BotForm(data=data, instance=bot)
    if not form.is_valid():
        errors = {
            field: [error["message"] for error in errors] for field, errors in form.errors.get_json_data().items()
        }
        return Status(400, {"detail": "The settings are not valid.", "errors": errors})
    with transaction.atomic():
        bot = form.save()
    return bot_out(bot)


@router.get("/bots/{slug}/approved-answers", response={200: list[ApprovedAnswerOut], 404: Error})
def approved_answers_list(request, slug: str):
    return list(bot_of(request, slug).approved_answers.order_by("-created_at"))


@router.post(
    "/bots/{slug}/approved-answers",
    response={201: ApprovedAnswerOut, 403: Error, 404: Error},
    summary="Answer questions like this one with this text, verbatim",
)
def approved_answer_create(request, slug: str, body: ApprovedAnswerIn):
    bot = bot_of(request, slug, write=True)
    approved = approved_answer_add(bot=bot, question=body.question, answer=body.answer, add_faq=body.add_faq)
    return Status(201, approved)


@router.delete("/bots/{slug}/approved-answers/{answer_id}", response={204: None, 403: Error, 404: Error})
def approved_answer_remove(request, slug: str, answer_id: int):
    bot = bot_of(request, slug, write=True)
    approved_answer_delete(approved_answer=get_object_or_404(ApprovedAnswer, id=answer_id, bot=bot))
    return Status(204, None)
