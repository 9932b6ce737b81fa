"""Staff pages for leads: a bot's leads with their deliveries, one lead with every delivery attempt, the CSV
export, and deleting a visitor's data. Thin: authorise, parse, call one service, render.

Who may see a bot's leads: superusers and administrators (StaffMember role admin), and agents assigned to the bot
with `can_view_leads`. Deleting a visitor's data is for superusers and administrators only."""

import io
from datetime import date

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from chatbot.dashboard.permissions import is_admin, leads_visible, staff_required
from chatbot.dashboard.views.common import render_page
from chatbot.leads.export import lead_fields_display, leads_csv_write, leads_filter
from chatbot.models import Bot, LeadDelivery
from chatbot.privacy.services import visitor_data_delete as visitor_data_delete_all

LEADS_PER_PAGE = 50


def _bot_for(request, slug: str) -> Bot:
    bot = get_object_or_404(Bot, slug=slug)
    if not leads_visible(request.user, bot):
        raise PermissionDenied("You may not see the leads of this bot.")
    return bot


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _filters(request) -> dict:
    consent = {"yes": True, "no": False}.get(request.GET.get("consent", ""))
    return {
        "since": _day(request.GET.get("since", "")),
        "until": _day(request.GET.get("until", "")),
        "consent": consent,
    }


@require_GET
@staff_required
def leads_list(request, slug: str):
    bot = _bot_for(request, slug)
    filters = _filters(request)
    selected = leads_filter(bot=bot, **filters).prefetch_related(
        Prefetch("deliveries", queryset=LeadDelivery.objects.order_by("channel", "-created_at"))
    )
    page = Paginator(selected, LEADS_PER_PAGE).get_page(request.GET.get("page"))
    return render_page(
        request,
        "leads/list.html",
        {
            "bot": bot,
            "page": page,
            "filters": filters,
            "query": request.GET.urlencode(),
            "can_delete": is_admin(request.user),
        },
        section="leads",
    )


@require_GET
@staff_required
def leads_export(request, slug: str):
    bot = _bot_for(request, slug)
    out = io.StringIO()
    leads_csv_write(bot=bot, leads=leads_filter(bot=bot, **_filters(request)), out=out)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="leads-{bot.slug}-{timezone.localdate():%Y-%m-%d}.csv"'
    return response


@require_GET
@staff_required
def lead_detail(request, slug: str, lead_id: int):
    bot = _bot_for(request, slug)
    lead = get_object_or_404(bot.leads.select_related("conversation"), pk=lead_id)
    deliveries = lead.deliveries.prefetch_related("attempt_log").order_by("channel", "-created_at")
    return render_page(
        request,
        "leads/detail.html",
        {
            "bot": bot,
            "lead": lead,
            "fields": lead_fields_display(lead=lead),
            "deliveries": deliveries,
            "can_delete": is_admin(request.user),
        },
        section="leads",
    )


@require_POST
@staff_required
def visitor_data_delete(request, slug: str):
    bot = get_object_or_404(Bot, slug=slug)
    if not is_admin(request.user):
        raise PermissionDenied("Only administrators can delete a visitor's data.")
    email, visitor_id = request.POST.get("email", "").strip(), request.POST.get("visitor_id", "").strip()
    if not email and not visitor_id:
        messages.error(request, "Give the visitor's email address or visitor id.")
        return redirect("leads-list", slug=bot.slug)
    deleted = visitor_data_delete_all(bot=bot, email=email or None, visitor_id=visitor_id or None)
    messages.success(
        request,
        f"Deleted {deleted.leads} lead(s), {deleted.conversations} conversation(s) and {deleted.messages} "
        f"message(s) of {email or visitor_id}.",
    )
    return redirect("leads-list", slug=bot.slug)
