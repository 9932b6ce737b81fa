"""Integrations (administrators): API keys (created and shown once, revoked) and event webhook subscriptions (made
with address checks, removed, each with its secret and recent deliveries), with the bots' lead webhooks."""

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from chatbot.apikeys.services import api_key_create, api_key_revoke
from chatbot.bots.services import ROTATABLE_SECRETS, bot_secret_rotate
from chatbot.dashboard.integrations_forms import ApiKeyForm, WebhookSubscriptionForm
from chatbot.dashboard.permissions import admin_required
from chatbot.dashboard.views.common import render_page
from chatbot.models import ApiKey, Bot, WebhookDelivery, WebhookSubscription
from chatbot.webhooks.subscriptions import SubscriptionInvalid, subscription_create, subscription_delete


def _page(request, *, key_form=None, webhook_form=None, new_key: str = "", status: int = 200):
    recent = WebhookDelivery.objects.order_by("-created_at").prefetch_related("attempt_log")
    subscriptions = WebhookSubscription.objects.select_related("bot").prefetch_related(
        Prefetch("deliveries", queryset=recent, to_attr="recent_deliveries")
    )
    return render_page(
        request,
        "dashboard/integrations.html",
        {
            "keys": ApiKey.objects.prefetch_related("bots").order_by("revoked_at", "-created_at"),
            "subscriptions": subscriptions,
            "lead_webhooks": Bot.objects.exclude(crm_webhook_url="").order_by("name"),
            "key_form": key_form or ApiKeyForm(),
            "webhook_form": webhook_form or WebhookSubscriptionForm(),
            "new_key": new_key,
        },
        section="integrations",
        status=status,
    )


@require_GET
@admin_required
def integrations(request):
    return _page(request)


@require_POST
@admin_required
def api_key_new(request):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, key_form=form, status=400)
    api_key, key = api_key_create(
        name=form.cleaned_data["name"],
        bots=list(form.cleaned_data["bots"]),
        read_only=form.cleaned_data["read_only"],
        user=request.user,
    )
    messages.success(request, f"API key “{api_key.name}” created. Copy it now: it is not shown again.")
    # Rendered, not redirected: the key must not travel through the session or a URL.
    return _page(request, new_key=key)


@require_POST
@admin_required
def api_key_revoke_view(request, key_id: int):
    api_key = get_object_or_404(ApiKey, id=key_id)
    api_key_revoke(api_key=api_key)
    messages.success(request, f"API key “{api_key.name}” revoked: it no longer works.")
    return redirect("dashboard:integrations")


@require_POST
@admin_required
def webhook_new(request):
    form = WebhookSubscriptionForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            subscription_create(
                bot=data["bot"],
                url=data["url"],
                events=list(data["events"]),
                description=data["description"],
                allow_private_addresses=data["allow_private_addresses"],
            )
        except SubscriptionInvalid as invalid:
            for field, problem in invalid.problems.items():
                form.add_error(field if field in form.fields else None, problem)
        else:
            messages.success(request, "Subscription added: events are delivered from now on.")
            return redirect("dashboard:integrations")
    return _page(request, webhook_form=form, status=400)


@require_POST
@admin_required
def webhook_remove(request, subscription_id: int):
    subscription_delete(subscription=get_object_or_404(WebhookSubscription, id=subscription_id))
    messages.success(request, "Subscription removed.")
    return redirect("dashboard:integrations")


@require_POST
@admin_required
def bot_secret_rotate_view(request, slug: str, which: str):
    bot = get_object_or_404(Bot, slug=slug)
    if which not in ROTATABLE_SECRETS:
        return redirect("dashboard:bot-edit", bot.slug)
    bot_secret_rotate(bot=bot, which=which)
    what = "Webhook secret" if which == "webhook" else "Identity secret"
    messages.success(request, f"{what} rotated: update it where it is used; the old one no longer works.")
    return redirect("dashboard:bot-edit", bot.slug)
