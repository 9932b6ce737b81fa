"""The conversation list, a transcript, taking a conversation over, writing to the visitor."""

from django.contrib import messages
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from chatbot.chat import staff as chat_staff
from chatbot.chat.staff_feed import dashboard_message
from chatbot.dashboard import permissions, quality, selectors
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.common import render_page
from chatbot.dashboard.views.inbox import inbox_context, transcript_inbox_context
from chatbot.models import Conversation, Message, staff_colleague_name


@require_GET
@staff_required
def conversations(request):
    bots = permissions.bots_visible(request.user)
    filters = selectors.ConversationFilters.from_query(request.GET)
    cursor = request.GET.get("after", "")
    try:
        page = selectors.conversation_page(bots=bots, filters=filters, user=request.user, cursor=cursor)
    except selectors.BadCursor as error:
        messages.error(request, str(error))
        cursor, page = "", selectors.conversation_page(bots=bots, filters=filters, user=request.user)
    return render_page(
        request,
        "dashboard/conversations.html",
        {
            "conversations": page.conversations,
            "filters": filters,
            "bots": bots,
            "filtered": bool(set(request.GET) - {"view", "after"}),
            **inbox_context(request, filters=filters, page=page, cursor=cursor, bots=bots),
        },
        section="conversations",
    )


def _conversation_for(request, conversation_id: str) -> Conversation:
    conversation = get_object_or_404(Conversation.objects.select_related("bot", "taken_over_by"), id=conversation_id)
    if not permissions.conversation_visible(request.user, conversation):
        raise Http404("No such conversation")
    return conversation


@require_GET
@staff_required
def transcript(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    messages_ = selectors.transcript(conversation=conversation)
    return render_page(
        request,
        "dashboard/transcript.html",
        {
            "conversation": conversation,
            "messages_": messages_,
            "next_conversation": selectors.conversation_next_of_visitor(conversation=conversation),
            "taken_over_by_me": conversation.taken_over_by_id == request.user.id,
            "taken_over_by_name": staff_colleague_name(conversation.taken_over_by)
            if conversation.taken_over_by
            else "",
            "leads": list(conversation.leads.all())
            if permissions.leads_visible(request.user, conversation.bot)
            else [],
            "unhelpful": {m.id for m in messages_ if m.role == Message.Role.BOT and quality.no_relevant_passage(m)},
            **transcript_inbox_context(request, conversation=conversation),
        },
        section="conversations",
    )


@require_POST
@staff_required
def take_over(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    try:
        chat_staff.conversation_take_over(conversation=conversation, user=request.user)
    except chat_staff.ConversationTakenByOther:
        messages.error(request, "Another staff member has already taken this conversation over.")
    return redirect("dashboard:transcript", conversation.id)


@require_POST
@staff_required
def hand_back(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    try:
        chat_staff.conversation_hand_back(
            conversation=conversation, user=request.user, force=permissions.is_admin(request.user)
        )
    except chat_staff.ConversationTakenByOther:
        messages.error(request, "Only the staff member who took the conversation over can hand it back.")
    return redirect("dashboard:transcript", conversation.id)


@require_POST
@staff_required
def staff_message(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    text = request.POST.get("text", "").strip()
    wants_json = request.headers.get("accept", "").startswith("application/json")
    if not text or len(text) > 4000:
        if wants_json:
            return JsonResponse({"error": "Write a message (at most 4000 characters)."}, status=400)
        messages.error(request, "Write a message (at most 4000 characters).")
        return redirect("dashboard:transcript", conversation.id)
    try:
        message = chat_staff.staff_message_send(conversation=conversation, user=request.user, text=text)
    except chat_staff.ConversationNotTakenOver:
        if wants_json:
            return JsonResponse({"error": "Take the conversation over first."}, status=409)
        messages.error(request, "Take the conversation over first.")
        return redirect("dashboard:transcript", conversation.id)
    if wants_json:
        return JsonResponse({"message": dashboard_message(message)})
    return redirect("dashboard:transcript", conversation.id)
