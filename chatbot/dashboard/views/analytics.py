"""Analytics: conversations, answers without a human, feedback, leads, speed and tokens over time."""

from django.views.decorators.http import require_GET

from chatbot.dashboard import charts, permissions, selectors
from chatbot.dashboard.permissions import staff_required
from chatbot.dashboard.views.common import render_page
from chatbot.dashboard.views.insights import insights_context


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
        "insights": insights_context(bots=bots, days=days),
    }
    return render_page(request, "dashboard/analytics.html", context, section="analytics")
