"""Bots (administrators): their settings, knowledge sources, bot files."""

import json

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from chatbot.bots import botfiles
from chatbot.bots.progress import source_progress
from chatbot.bots.services import bot_create
from chatbot.bots.sources import source_add_and_ingest, sources_add_uploads
from chatbot.bots.sources import source_resync as bot_source_resync
from chatbot.chat.widget import embed_snippet
from chatbot.dashboard.forms import BotForm, ImportForm, SourceForm
from chatbot.dashboard.permissions import admin_required
from chatbot.dashboard.views.common import render_page
from chatbot.leads.form import TEXT as LEAD_FORM_TEXTS
from chatbot.models import Bot
from knowledge.models import Source
from knowledge.services import source_delete
from knowledge.web import address_problem


@require_GET
@admin_required
def bots(request):
    return render_page(
        request, "dashboard/bots.html", {"bots": Bot.objects.all(), "import_form": ImportForm()}, section="bots"
    )


@admin_required
def bot_new(request):
    form = BotForm(request.POST or None, initial={"color": "#4f46e5", "language": "en", "temperature": 0.3})
    if request.method == "POST" and form.is_valid():
        fields = {name: value for name, value in form.bot_fields().items() if name not in ("slug", "name")}
        bot = bot_create(slug=form.cleaned_data["slug"], name=form.cleaned_data["name"], **fields)
        messages.success(request, f"Bot “{bot.name}” created. Add knowledge next.")
        return redirect("dashboard:bot-knowledge", bot.slug)
    return render_page(
        request,
        "dashboard/bot_form.html",
        {"form": form, "bot": None, "lead_form_texts": LEAD_FORM_TEXTS},
        section="bots",
    )


@admin_required
def bot_edit(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    form = BotForm(request.POST or None, instance=bot)
    if request.method == "POST" and form.is_valid():
        bot = form.save()
        messages.success(request, "Settings saved. The preview shows them.")
        return redirect("dashboard:bot-edit", bot.slug)
    return render_page(
        request,
        "dashboard/bot_form.html",
        {"form": form, "bot": bot, "snippet": embed_snippet(bot), "lead_form_texts": LEAD_FORM_TEXTS},
        section="bots",
    )


@admin_required
def bot_knowledge(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    form = SourceForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if bot.knowledge_base_id is None:
            messages.error(request, "This bot has no knowledge base.")
        elif form.is_valid() and (added := _source_add(request, bot, form)):
            messages.success(request, added)
            return redirect("dashboard:bot-knowledge", bot.slug)
    sources = bot.knowledge_base.sources.all() if bot.knowledge_base_id else Source.objects.none()
    return render_page(
        request,
        "dashboard/knowledge.html",
        {"bot": bot, "form": form, "sources": sources, "approved_answers": bot.approved_answers.all()},
        section="bots",
    )


def _source_add(request, bot: Bot, form: SourceForm) -> str | None:
    """Add what the form describes; the success message, or None when nothing was added (errors on the form or
    in messages)."""
    data = form.cleaned_data
    kind = data["kind"]
    if kind == "file":
        report = sources_add_uploads(bot=bot, uploads=[(upload.name, upload.read()) for upload in data["file"]])
        for problem in report.refused:
            messages.error(request, problem)
        count = len(report.added) + len(report.updated)
        if not count:
            form.add_error("file", "No document was added.")
            return None
        return f"{count} document(s) added; ingestion has started." if count > 1 else "Ingestion has started."
    if kind == "faq":
        source_add_and_ingest(bot=bot, kind="faq", question=data["question"], answer=data["answer"])
        return "FAQ entry added; ingestion has started."
    allow_private = data["allow_private_addresses"] or settings.PARLEY_ALLOW_PRIVATE_URLS
    problem = address_problem(data["url"], allow_private=allow_private, unknown_host_ok=True)
    if problem:
        # Refused now, with the whole reason, rather than a source that fails a moment later.
        form.add_error(
            "url",
            f"{problem} For a site on your own network, tick “Allow private network addresses” "
            "(or set PARLEY_ALLOW_PRIVATE_URLS=1 for the whole instance).",
        )
        return None
    limits = {"allow_private_addresses": data["allow_private_addresses"]}
    if kind == "site":
        limits |= {name: data[name] for name in ("max_pages", "max_depth", "include_patterns", "exclude_patterns")}
    source_add_and_ingest(bot=bot, kind=kind, url=data["url"], resync_every_hours=data["resync_every_hours"], **limits)
    return "Website added; the crawl has started." if kind == "site" else "Source added; ingestion has started."


def _source_of(bot: Bot, source_id: int) -> Source:
    return get_object_or_404(Source, id=source_id, knowledge_base_id=bot.knowledge_base_id)


@require_GET
@admin_required
def knowledge_progress(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    sources = bot.knowledge_base.sources.all() if bot.knowledge_base_id else []
    return JsonResponse({"sources": [source_progress(source) for source in sources]})


@require_POST
@admin_required
def source_resync(request, slug: str, source_id: int):
    bot = get_object_or_404(Bot, slug=slug)
    bot_source_resync(source=_source_of(bot, source_id))
    messages.success(request, "Re-sync started.")
    return redirect("dashboard:bot-knowledge", bot.slug)


@require_POST
@admin_required
def source_allow_private(request, slug: str, source_id: int):
    """The per-source flag for an intranet site, from the row that failed on a private address; then re-sync."""
    bot = get_object_or_404(Bot, slug=slug)
    source = _source_of(bot, source_id)
    Source.objects.filter(id=source.id).update(allow_private_addresses=True)
    bot_source_resync(source=source)
    messages.success(request, "Private network addresses allowed for this source; re-sync started.")
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
    document = botfiles.bot_config_export(bot=bot)
    response = HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{slugify(bot.slug)}.parley-bot.json"'
    return response


@require_POST
@admin_required
def bot_import(request):
    """Two steps: the uploaded file is checked and what it would change is shown (nothing written); the reviewed
    document, posted back with "apply", is checked again and imported."""
    if request.POST.get("apply"):
        try:
            document = json.loads(request.POST.get("document", ""))
            report = botfiles.bot_config_import(document=document, user=request.user)
        except ValueError as error:
            problems = error.problems if isinstance(error, botfiles.BotConfigError) else [f"Not JSON: {error}"]
            for problem in problems:
                messages.error(request, problem)
            return redirect("dashboard:bots")
        return _imported(request, report)
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a bot configuration file.")
        return redirect("dashboard:bots")
    try:
        text = form.cleaned_data["file"].read().decode("utf-8")
        plan = botfiles.bot_config_plan(document=json.loads(text))
    except (ValueError, UnicodeDecodeError) as error:
        messages.error(request, f"Not JSON: {error}")
        return redirect("dashboard:bots")
    if plan.problems:
        for problem in plan.problems:
            messages.error(request, problem)
        return redirect("dashboard:bots")
    return render_page(request, "dashboard/bot_import.html", {"plan": plan, "document": text}, section="bots")


def _imported(request, report: botfiles.ImportReport):
    verb = "created" if report.created else "updated"
    messages.success(
        request,
        f"Bot “{report.bot.name}” {verb}: {report.approved_answers_added} approved answer(s) and "
        f"{report.sources_added} source(s) added.",
    )
    if report.sources_skipped:
        messages.warning(request, f"Upload these files again: {', '.join(report.sources_skipped)}.")
    return redirect("dashboard:bot-edit", report.bot.slug)
