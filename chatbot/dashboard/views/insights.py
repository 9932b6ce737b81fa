"""The analytics page's insights (topics, sentiment, the model's runs) and running an analysis now."""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from chatbot.dashboard import charts, permissions
from chatbot.dashboard.permissions import staff_required
from chatbot.insights import selectors
from chatbot.insights.runs import insights_request
from chatbot.models import InsightRun


def insights_context(*, bots, days: int) -> dict:
    topics = selectors.topics_top(bots=bots, days=days)
    for row in topics:
        row.sparkline = charts.sparkline(title=f"{row.label}: questions per day", values=row.per_day)
    sentiment = selectors.sentiment_series(bots=bots, days=days)
    runs = selectors.runs_latest(bots=bots)
    return {
        "topics": topics,
        "sentiment": sentiment,
        "sentiment_chart": charts.bar_chart(
            title="Sentiment of finished conversations",
            labels=[day.strftime("%d %b") for day in sentiment.days],
            series=[
                charts.Series("Positive", sentiment.positive, "#10b981"),
                charts.Series("Neutral", sentiment.neutral, "#94a3b8"),
                charts.Series("Negative", sentiment.negative, "#ef4444"),
            ],
        ),
        "runs": runs,
        "running": any(run.status in (InsightRun.Status.QUEUED, InsightRun.Status.RUNNING) for run in runs),
        "without_model": selectors.bots_without_model(bots=bots),
    }


@require_POST
@staff_required
def insights_refresh(request):
    bots = permissions.bots_visible(request.user)
    slug = request.POST.get("bot", "")
    if slug:
        bots = bots.filter(slug=slug)
    queued = insights_request(bots=bots, trigger=InsightRun.Trigger.ON_DEMAND)
    if queued:
        messages.success(
            request,
            f"Analysing {len(queued)} bot(s) with their own model. Topics and summaries appear here when it is done: "
            "reload the page in a minute.",
        )
    else:
        messages.info(request, "An analysis is already running.")
    return redirect(reverse("dashboard:analytics") + (f"?bot={slug}" if slug else "") + "#insights")
