"""The inbox: the conversation list's tabs and pages, assigning, resolving, internal notes, saved replies. Thin:
authorise, parse, call one service, redirect."""

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from chatbot.answers.corrections import corrections_approved
from chatbot.dashboard import inbox, permissions, selectors
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.common import render_page
from chatbot.insights.selectors import conversation_insight, topic_label
from chatbot.models import Conversation, SavedReply, Topic

VIEW_TABS = [("", "All"), ("mine", "Mine"), ("unassigned", "Unassigned"), ("waiting", "Waiting for a human")]


def conversation_for_staff(request, conversation_id: str) -> Conversation:
    conversation = get_object_or_404(
        Conversation.objects.select_related("bot", "taken_over_by", "assigned_to"), id=conversation_id
    )
    if not permissions.conversation_visible(request.user, conversation):
        raise Http404("No such conversation")
    return conversation


def inbox_context(request, *, filters: selectors.ConversationFilters, page, cursor: str, bots) -> dict:
    """What the conversation list adds for the inbox: its tabs, the next page's link, the topic it shows."""
    params = {key: value for key, value in request.GET.items() if key not in ("view", "after")}
    tabs = [
        {"view": view, "label": label, "url": "?" + urlencode({**params, **({"view": view} if view else {})})}
        for view, label in VIEW_TABS
    ]
    next_url = "?" + urlencode({**request.GET.dict(), "after": page.next_cursor}) if page.next_cursor else ""
    topic = Topic.objects.filter(id=filters.topic, bot__in=bots).first() if filters.topic is not None else None
    return {
        "tabs": tabs,
        "next_url": next_url,
        "first_url": "?" + urlencode(params | ({"view": filters.view} if filters.view else {})) if cursor else "",
        "topic": topic,
        "topic_label": topic_label(topic) if topic else "",
        "me_id": request.user.id,
        # New and changed rows arrive live on the first page, when the page can tell which belong (by bot, tab and
        # status); a search or another filter shows what it found when it ran.
        "live": not cursor and not (set(request.GET) - {"view", "bot", "status"}),
    }


def transcript_inbox_context(request, *, conversation: Conversation) -> dict:
    """What the transcript adds: owner and colleagues, status, notes, saved replies, corrections, the model's
    summary, and what the staff member may do with the visitor's data."""
    return {
        "colleagues": inbox.colleagues_for(bot=conversation.bot),
        "notes": inbox.notes_of(conversation=conversation),
        "saved_replies": inbox.saved_replies_for(bot=conversation.bot),
        "approved_from": corrections_approved(conversation=conversation),
        "insight": conversation_insight(conversation=conversation),
        "can_export_visitor": permissions.leads_visible(request.user, conversation.bot),
        "can_delete_visitor": permissions.is_admin(request.user),
    }


def _back(conversation: Conversation):
    return redirect("dashboard:transcript", conversation.id)


@require_POST
@staff_required
def assign(request, conversation_id: str):
    conversation = conversation_for_staff(request, conversation_id)
    choice = request.POST.get("assignee", "").strip()
    if choice == "me":
        assignee_id = request.user.id
    elif choice.isdigit():
        assignee_id = int(choice)
    elif choice == "":
        assignee_id = None
    else:
        messages.error(request, "Choose a colleague.")
        return _back(conversation)
    try:
        inbox.conversation_assign(conversation=conversation, assignee_id=assignee_id)
    except inbox.AssigneeNotAllowed:
        messages.error(request, "That colleague cannot see this bot's conversations.")
    return _back(conversation)


@require_POST
@staff_required
def resolve(request, conversation_id: str):
    conversation = conversation_for_staff(request, conversation_id)
    if request.POST.get("reopen") == "1":
        inbox.conversation_reopen(conversation=conversation)
    else:
        inbox.conversation_resolve(conversation=conversation, user=request.user)
        messages.success(request, "Marked as resolved. It comes back to the inbox if the visitor writes again.")
    return _back(conversation)


@require_POST
@staff_required
def note_add(request, conversation_id: str):
    conversation = conversation_for_staff(request, conversation_id)
    try:
        inbox.note_add(conversation=conversation, user=request.user, text=request.POST.get("text", ""))
    except inbox.InvalidInput as error:
        messages.error(request, str(error))
    return _back(conversation)


# --- saved replies ---


@require_http_methods(["GET", "POST"])
@staff_required
def saved_replies(request):
    bots = permissions.bots_visible(request.user)
    if request.method == "POST":
        slug = request.POST.get("bot", "")
        if not slug and not permissions.is_admin(request.user):
            messages.error(request, "Only administrators can save replies for every bot.")
            return redirect("dashboard:saved-replies")
        bot = permissions.bot_for(request.user, slug) if slug else None
        try:
            reply = inbox.saved_reply_save(
                bot=bot, shortcut=request.POST.get("shortcut", ""), text=request.POST.get("text", ""), user=request.user
            )
        except inbox.InvalidInput as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Saved: type /{reply.shortcut} in the reply box to use it.")
        return redirect("dashboard:saved-replies")
    return render_page(
        request,
        "dashboard/saved_replies.html",
        {"replies": inbox.saved_replies_visible(bots=bots), "bots": bots},
        section="replies",
    )


@require_POST
@staff_required
def saved_reply_delete(request, reply_id: int):
    reply = get_object_or_404(SavedReply, id=reply_id)
    allowed = permissions.is_admin(request.user) or (
        reply.bot_id is not None and reply.bot_id in permissions.bot_ids_visible(request.user)
    )
    if not allowed:
        raise Http404("No such reply")
    inbox.saved_reply_delete(reply=reply)
    messages.success(request, f"/{reply.shortcut} deleted.")
    return redirect("dashboard:saved-replies")
