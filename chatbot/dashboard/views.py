"""Dashboard pages. Thin: authorise (chatbot.dashboard.permissions), parse, call one service or selector, render."""

import json

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from chatbot.dashboard import botconfig, charts, permissions, quality, selectors, services
from chatbot.dashboard.forms import ApprovedAnswerForm, BotForm, ImportForm, SourceForm, StaffForm
from chatbot.dashboard.permissions import admin_required, staff_required
from chatbot.models import ApprovedAnswer, Bot, Conversation, Message, StaffMember
from chatbot.services import bot_create
from chatbot.widget import embed_snippet
from knowledge.models import Source
from knowledge.services import source_delete

REASON_LABELS = {"no_passage": "No relevant passage", "thumbs_down": "Thumbs down", "asked_human": "Asked for a person"}


def _render(request, template: str, context: dict, *, section: str, status: int = 200):
    user = request.user
    context = {
        **context,
        "section": section,
        "role": permissions.staff_role(user),
        "is_admin": permissions.is_admin(user),
        "me": permissions.staff_name(user),
    }
    return render(request, template, context, status=status)


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = "/dashboard/"


class LogoutView(auth_views.LogoutView):
    next_page = "/dashboard/login/"


# --- conversations ---


@require_GET
@staff_required
def conversations(request):
    bots = permissions.bots_visible(request.user)
    filters = selectors.ConversationFilters.from_query(request.GET)
    rows = selectors.conversation_list(bots=bots, filters=filters)
    return _render(
        request,
        "dashboard/conversations.html",
        {"conversations": rows, "filters": filters, "bots": bots, "filtered": bool(request.GET)},
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
    return _render(
        request,
        "dashboard/transcript.html",
        {
            "conversation": conversation,
            "messages_": messages_,
            "taken_over_by_me": conversation.taken_over_by_id == request.user.id,
            "taken_over_by_name": permissions.staff_name(conversation.taken_over_by)
            if conversation.taken_over_by
            else "",
            "leads": list(conversation.leads.all())
            if permissions.leads_visible(request.user, conversation.bot)
            else [],
            "unhelpful": {m.id for m in messages_ if m.role == Message.Role.BOT and quality._no_relevant_passage(m)},
        },
        section="conversations",
    )


@require_POST
@staff_required
def take_over(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    try:
        services.conversation_take_over(conversation=conversation, user=request.user)
    except services.ConversationTakenByOther:
        messages.error(request, "Another staff member has already taken this conversation over.")
    return redirect("dashboard:transcript", conversation.id)


@require_POST
@staff_required
def hand_back(request, conversation_id: str):
    conversation = _conversation_for(request, conversation_id)
    try:
        services.conversation_hand_back(
            conversation=conversation, user=request.user, force=permissions.is_admin(request.user)
        )
    except services.ConversationTakenByOther:
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
        message = services.staff_message_send(conversation=conversation, user=request.user, text=text)
    except services.ConversationNotTakenOver:
        if wants_json:
            return JsonResponse({"error": "Take the conversation over first."}, status=409)
        messages.error(request, "Take the conversation over first.")
        return redirect("dashboard:transcript", conversation.id)
    if wants_json:
        return JsonResponse({"message": services.dashboard_message(message)})
    return redirect("dashboard:transcript", conversation.id)


# --- quality ---


@require_GET
@staff_required
def quality_page(request):
    bots = permissions.bots_visible(request.user)
    groups = quality.unanswered_groups(bots=bots)
    bot_names = {bot.id: bot for bot in bots}
    for group in groups:
        group.bot = bot_names.get(group.bot_id)
        group.reason_labels = [REASON_LABELS[r] for r in group.reasons]
    answers = ApprovedAnswer.objects.filter(bot__in=bots).select_related("bot", "created_by")[:100]
    return _render(
        request,
        "dashboard/quality.html",
        {"groups": groups, "approved_answers": answers, "form": ApprovedAnswerForm(initial={"add_faq": True})},
        section="quality",
    )


@require_POST
@staff_required
def approved_answer_create(request):
    form = ApprovedAnswerForm(request.POST)
    if not form.is_valid():
        messages.error(request, "An answer needs a question and a text.")
        return redirect("dashboard:quality")
    bot = permissions.bot_for(request.user, form.cleaned_data["bot"])
    services.approved_answer_add(
        bot=bot,
        question=form.cleaned_data["question"],
        answer=form.cleaned_data["answer"],
        user=request.user,
        add_faq=form.cleaned_data["add_faq"],
    )
    messages.success(request, "Answer saved: the bot now gives it to questions like this one.")
    return redirect("dashboard:quality")


@require_POST
@staff_required
def approved_answer_remove(request, answer_id: int):
    approved = get_object_or_404(ApprovedAnswer, id=answer_id, bot__in=permissions.bots_visible(request.user))
    services.approved_answer_delete(approved_answer=approved)
    messages.success(request, "Approved answer deleted.")
    return redirect(request.POST.get("next") or "dashboard:quality")


# --- analytics ---


@require_GET
@staff_required
def analytics(request):
    bots = permissions.bots_visible(request.user)
    slug = request.GET.get("bot", "")
    if slug:
        bots = bots.filter(slug=slug)
    try:
        days = min(max(int(request.GET.get("days", 30)), 7), 365)
    except ValueError:
        days = 30
    data = selectors.analytics(bots=bots, days=days)
    labels = [day.strftime("%d %b") for day in data.days]
    series = charts.Series
    context = {
        "data": data,
        "days": days,
        "bot_slug": slug,
        "bots": permissions.bots_visible(request.user),
        "charts": {
            "conversations": charts.bar_chart(
                title="Conversations per day",
                labels=labels,
                series=[series("Conversations", data.conversations, "#4f46e5")],
            ),
            "answered": charts.bar_chart(
                title="Answered without a human",
                labels=labels,
                series=[
                    series("Bot only", data.bot_only, "#10b981"),
                    series("With a person", data.with_human, "#f59e0b"),
                ],
            ),
            "feedback": charts.bar_chart(
                title="Feedback",
                labels=labels,
                series=[
                    series("Helpful", data.feedback_up, "#10b981"),
                    series("Not helpful", data.feedback_down, "#ef4444"),
                ],
            ),
            "leads": charts.bar_chart(
                title="Leads per day", labels=labels, series=[series("Leads", data.leads, "#0ea5e9")]
            ),
            "ttft": charts.line_chart(
                title="Time to first token",
                labels=labels,
                unit=" ms",
                series=[series("median", data.ttft_median_ms, "#4f46e5"), series("p90", data.ttft_p90_ms, "#f59e0b")],
            ),
            "tokens": charts.hbar_chart(title="Tokens generated per bot", items=data.tokens_by_bot),
        },
    }
    return _render(request, "dashboard/analytics.html", context, section="analytics")


# --- bots (administrators) ---


@require_GET
@admin_required
def bots(request):
    return _render(
        request, "dashboard/bots.html", {"bots": Bot.objects.all(), "import_form": ImportForm()}, section="bots"
    )


@admin_required
def bot_new(request):
    form = BotForm(request.POST or None, initial={"color": "#4f46e5", "language": "en", "temperature": 0.3})
    if request.method == "POST" and form.is_valid():
        fields = {name: value for name, value in form.cleaned_data.items() if name not in ("slug", "name")}
        bot = bot_create(slug=form.cleaned_data["slug"], name=form.cleaned_data["name"], **fields)
        messages.success(request, f"Bot “{bot.name}” created. Add knowledge next.")
        return redirect("dashboard:bot-knowledge", bot.slug)
    return _render(request, "dashboard/bot_form.html", {"form": form, "bot": None}, section="bots")


@admin_required
def bot_edit(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    form = BotForm(request.POST or None, instance=bot)
    if request.method == "POST" and form.is_valid():
        bot = form.save()
        messages.success(request, "Settings saved. The preview shows them.")
        return redirect("dashboard:bot-edit", bot.slug)
    return _render(
        request,
        "dashboard/bot_form.html",
        {"form": form, "bot": bot, "snippet": embed_snippet(bot)},
        section="bots",
    )


@admin_required
def bot_knowledge(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    form = SourceForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if bot.knowledge_base_id is None:
            messages.error(request, "This bot has no knowledge base.")
        elif form.is_valid():
            data = form.cleaned_data
            if data["kind"] == "file":
                upload = data["file"]
                services.source_add_and_ingest(bot=bot, kind="file", filename=upload.name, data=upload.read())
            elif data["kind"] == "faq":
                services.source_add_and_ingest(bot=bot, kind="faq", question=data["question"], answer=data["answer"])
            else:
                services.source_add_and_ingest(
                    bot=bot, kind=data["kind"], url=data["url"], resync_every_hours=data["resync_every_hours"]
                )
            messages.success(request, "Source added; ingestion has started.")
            return redirect("dashboard:bot-knowledge", bot.slug)
    sources = bot.knowledge_base.sources.all() if bot.knowledge_base_id else Source.objects.none()
    return _render(
        request,
        "dashboard/knowledge.html",
        {"bot": bot, "form": form, "sources": sources, "approved_answers": bot.approved_answers.all()},
        section="bots",
    )


def _source_of(bot: Bot, source_id: int) -> Source:
    return get_object_or_404(Source, id=source_id, knowledge_base_id=bot.knowledge_base_id)


@require_GET
@admin_required
def knowledge_progress(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    sources = bot.knowledge_base.sources.all() if bot.knowledge_base_id else []
    return JsonResponse(
        {
            "sources": [
                {
                    "id": s.id,
                    "status": s.status,
                    "status_label": s.get_status_display(),
                    "done": s.documents_done,
                    "total": s.documents_total,
                    "error": s.error,
                }
                for s in sources
            ]
        }
    )


@require_POST
@admin_required
def source_resync(request, slug: str, source_id: int):
    bot = get_object_or_404(Bot, slug=slug)
    services.source_resync(source=_source_of(bot, source_id))
    messages.success(request, "Re-sync started.")
    return redirect("dashboard:bot-knowledge", bot.slug)


@require_POST
@admin_required
def source_remove(request, slug: str, source_id: int):
    bot = get_object_or_404(Bot, slug=slug)
    source_delete(source=_source_of(bot, source_id))
    messages.success(request, "Source deleted.")
    return redirect("dashboard:bot-knowledge", bot.slug)


@require_GET
@admin_required
def bot_export(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    document = botconfig.bot_config_export(bot=bot)
    response = HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{slugify(bot.slug)}.parley-bot.json"'
    return response


@require_POST
@admin_required
def bot_import(request):
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a bot configuration file.")
        return redirect("dashboard:bots")
    try:
        document = json.loads(form.cleaned_data["file"].read().decode("utf-8"))
        report = botconfig.bot_config_import(document=document, user=request.user)
    except (ValueError, UnicodeDecodeError) as error:
        problems = error.problems if isinstance(error, botconfig.BotConfigError) else [f"Not JSON: {error}"]
        for problem in problems:
            messages.error(request, problem)
        return redirect("dashboard:bots")
    verb = "created" if report.created else "updated"
    messages.success(
        request,
        f"Bot “{report.bot.name}” {verb}: {report.approved_answers_added} approved answer(s) and "
        f"{report.sources_added} source(s) added.",
    )
    if report.sources_skipped:
        messages.warning(request, f"Upload these files again: {', '.join(report.sources_skipped)}.")
    return redirect("dashboard:bot-edit", report.bot.slug)


# --- leads ---


@require_GET
@staff_required
def leads_index(request):
    bots = [bot for bot in permissions.bots_visible(request.user) if permissions.leads_visible(request.user, bot)]
    return _render(request, "dashboard/leads_index.html", {"bots": bots}, section="leads")


# --- staff (administrators) ---


@require_GET
@admin_required
def staff(request):
    members = StaffMember.objects.select_related("user").prefetch_related("bots").order_by("user__username")
    return _render(request, "dashboard/staff.html", {"members": members}, section="staff")


@admin_required
def staff_edit(request, member_id: int | None = None):
    member = get_object_or_404(StaffMember.objects.select_related("user"), id=member_id) if member_id else None
    initial = (
        {
            "username": member.user.username,
            "display_name": member.display_name,
            "email": member.user.email,
            "role": member.role,
            "bots": list(member.bots.all()),
            "can_view_leads": member.can_view_leads,
        }
        if member
        else {"role": StaffMember.Role.AGENT}
    )
    form = StaffForm(request.POST or None, initial=initial, creating=member is None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        services.staff_member_save(
            username=member.user.username if member else data["username"],
            role=data["role"],
            bots=list(data["bots"]),
            display_name=data["display_name"],
            can_view_leads=data["can_view_leads"],
            password=data["password"] or None,
            email=data["email"],
        )
        messages.success(request, "Staff member saved.")
        return redirect("dashboard:staff")
    return _render(request, "dashboard/staff_form.html", {"form": form, "member": member}, section="staff")
