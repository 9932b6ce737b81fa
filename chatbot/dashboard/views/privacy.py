"""A visitor's data from their transcript: the JSON export that answers an access request, and deleting it all."""

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from chatbot.dashboard import permissions
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.inbox import conversation_for_staff
from chatbot.privacy.export import visitor_data_export
from chatbot.privacy.services import visitor_data_delete


@require_GET
@staff_required
def visitor_export(request, conversation_id: str):
    conversation = conversation_for_staff(request, conversation_id)
    # The export holds the visitor's leads: for those who may see them.
    if not permissions.leads_visible(request.user, conversation.bot):
        raise PermissionDenied("Exporting a visitor's data needs access to the bot's leads.")
    document = visitor_data_export(bot=conversation.bot, visitor_id=conversation.visitor_id)
    response = HttpResponse(
        json.dumps(document, ensure_ascii=False, indent=2), content_type="application/json; charset=utf-8"
    )
    filename = f"visitor-{conversation.bot.slug}-{conversation.visitor_id[:24]}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@staff_required
def visitor_delete(request, conversation_id: str):
    conversation = conversation_for_staff(request, conversation_id)
    if not permissions.is_admin(request.user):
        raise PermissionDenied("Only administrators can delete a visitor's data.")
    if request.POST.get("confirm") != "1":
        messages.error(request, "Tick the box to confirm: nothing was deleted.")
        return redirect("dashboard:transcript", conversation.id)
    deleted = visitor_data_delete(bot=conversation.bot, visitor_id=conversation.visitor_id)
    messages.success(
        request,
        f"Deleted {deleted.leads} lead(s), {deleted.conversations} conversation(s) and {deleted.messages} "
        f"message(s) of visitor {conversation.visitor_id}.",
    )
    return redirect("dashboard:conversations")
