"""A bot's leads: list (the leads page's filters, with paging), one, the CSV export, deleting a visitor's data."""

from __future__ import annotations

import io

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Query, Router
from ninja.errors import HttpError

from chatbot.api.auth import bot_of
from chatbot.api.schemas import Error, LeadFilters, LeadOut, LeadPage, VisitorDataDeletedOut, VisitorDataDeleteIn
from chatbot.leads.export import leads_csv_write, leads_filter
from chatbot.models import Lead
from chatbot.privacy.services import visitor_data_delete

router = Router(tags=["leads"])


def lead_out(lead: Lead) -> dict:
    return {
        "id": lead.id,
        "bot": lead.bot.slug,
        "email": lead.email,
        "name": lead.name,
        "fields": lead.data,
        "page_url": lead.page_url,
        "referrer": lead.referrer,
        "utm": lead.utm,
        "consent_text": lead.consent_text,
        "consent_at": lead.consent_at,
        "conversation_id": lead.conversation_id,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "deliveries": [
            {
                "channel": d.channel,
                "status": d.status,
                "attempts": d.attempts,
                "delivered_at": d.delivered_at,
                "delivered_to_console": d.delivered_to_console,
            }
            for d in lead.deliveries.all()
        ],
    }


def _filtered(bot, filters: LeadFilters):
    consent = {"yes": True, "no": False}.get(filters.consent or "")
    return leads_filter(bot=bot, since=filters.since, until=filters.until, consent=consent)


@router.get("/bots/{slug}/leads", response={200: LeadPage, 404: Error}, summary="A bot's leads, newest first")
def leads_list(request, slug: str, filters: Query[LeadFilters]):
    bot = bot_of(request, slug)
    leads = _filtered(bot, filters).select_related("bot").prefetch_related("deliveries")
    count = leads.count()
    page = leads[filters.offset : filters.offset + filters.limit]
    more = filters.offset + filters.limit < count
    return {
        "items": [lead_out(lead) for lead in page],
        "count": count,
        "next_offset": filters.offset + filters.limit if more else None,
    }


@router.get(
    "/bots/{slug}/leads.csv",
    response={200: str, 404: Error},
    openapi_extra={"responses": {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}},
    summary="The leads as CSV (the same filters; no paging)",
)
def leads_csv(request, slug: str, filters: Query[LeadFilters]):
    bot = bot_of(request, slug)
    out = io.StringIO()
    leads_csv_write(bot=bot, leads=_filtered(bot, filters), out=out)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="leads-{bot.slug}-{timezone.localdate():%Y-%m-%d}.csv"'
    return response


@router.get("/bots/{slug}/leads/{lead_id}", response={200: LeadOut, 404: Error})
def lead_read(request, slug: str, lead_id: int):
    bot = bot_of(request, slug)
    return lead_out(get_object_or_404(Lead.objects.select_related("bot"), id=lead_id, bot=bot))


@router.post(
    "/bots/{slug}/visitor-data/delete",
    response={200: VisitorDataDeletedOut, 400: Error, 403: Error, 404: Error},
    summary="Delete everything a visitor left with the bot (by email or visitor id)",
)
def visitor_delete(request, slug: str, body: VisitorDataDeleteIn):
    bot = bot_of(request, slug, write=True)
    if not body.email.strip() and not body.visitor_id.strip():
        raise HttpError(400, "Give the visitor's email or visitor_id.")
    deleted = visitor_data_delete(bot=bot, email=body.email or None, visitor_id=body.visitor_id or None)
    return {"conversations": deleted.conversations, "messages": deleted.messages, "leads": deleted.leads}
