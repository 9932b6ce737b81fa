"""Reading the insights for the dashboard: a conversation's summary, the top topics with their trend, sentiment per
day, the latest runs."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from chatbot.models import Bot, Conversation, ConversationInsight, InsightRun, Topic, TopicQuestion

TOP_TOPICS = 10
TREND_DAYS = 7
MAX_LABEL_CHARS = 80


def conversation_insight(*, conversation: Conversation) -> ConversationInsight | None:
    return ConversationInsight.objects.filter(conversation=conversation).first()


def topic_label(topic: Topic) -> str:
    """The model's label, or (without one) the topic's most central question."""
    if topic.label:
        return topic.label
    message = topic.central_message
    if message is None:
        first = topic.questions.select_related("message").order_by("-asked_at").first()
        message = first.message if first else None
    if message is None:
        return f"Topic {topic.id}"
    text = " ".join(message.text.split())
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1].rstrip() + "…"


@dataclass
class TopicRow:
    topic: Topic
    label: str
    labelled_by_model: bool
    count: int  # questions in the period
    recent: int  # in the last TREND_DAYS
    before: int  # in the TREND_DAYS before those
    per_day: list[int]

    @property
    def trend_pct(self) -> int | None:
        """Change of the last TREND_DAYS over the TREND_DAYS before, in percent (None: nothing before)."""
        return round(100 * (self.recent - self.before) / self.before) if self.before else None

    @property
    def trend_size(self) -> int:
        return abs(self.trend_pct or 0)


def topics_top(*, bots, days: int = 30, today: date | None = None, limit: int = TOP_TOPICS) -> list[TopicRow]:
    """The topics with the most questions in the last `days`, with their trend and their questions per day."""
    today = today or timezone.localdate()
    day_list = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    since = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))
    recent_since = timezone.make_aware(datetime.combine(today - timedelta(days=TREND_DAYS - 1), datetime.min.time()))
    before_since = recent_since - timedelta(days=TREND_DAYS)
    topics = list(
        Topic.objects.filter(bot__in=bots)
        .select_related("central_message")
        .annotate(
            period=Count("questions", filter=Q(questions__asked_at__gte=since)),
            recent=Count("questions", filter=Q(questions__asked_at__gte=recent_since)),
            before=Count(
                "questions", filter=Q(questions__asked_at__gte=before_since, questions__asked_at__lt=recent_since)
            ),
        )
        .filter(period__gt=0)
        .order_by("-period", "id")[:limit]
    )
    per_day: dict[int, dict[date, int]] = {}
    counts = (
        TopicQuestion.objects.filter(topic__in=topics, asked_at__gte=since)
        .annotate(day=TruncDate("asked_at"))
        .values("topic_id", "day")
        .annotate(n=Count("id"))
    )
    for row in counts:
        per_day.setdefault(row["topic_id"], {})[row["day"]] = row["n"]
    return [
        TopicRow(
            topic=topic,
            label=topic_label(topic),
            labelled_by_model=bool(topic.label),
            count=topic.period,
            recent=topic.recent,
            before=topic.before,
            per_day=[per_day.get(topic.id, {}).get(day, 0) for day in day_list],
        )
        for topic in topics
    ]


@dataclass
class SentimentSeries:
    days: list[date]
    positive: list[int]
    neutral: list[int]
    negative: list[int]

    @property
    def total(self) -> int:
        return sum(self.positive) + sum(self.neutral) + sum(self.negative)


def sentiment_series(*, bots, days: int = 30, today: date | None = None) -> SentimentSeries:
    """Finished conversations per day (of their last message) by the sentiment the model saw."""
    today = today or timezone.localdate()
    day_list = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    since = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))
    rows = (
        ConversationInsight.objects.filter(conversation__bot__in=bots, conversation__last_message_at__gte=since)
        .exclude(sentiment="")
        .annotate(day=TruncDate("conversation__last_message_at"))
        .values("day", "sentiment")
        .annotate(n=Count("conversation_id"))
    )
    counts: dict[tuple[date, str], int] = {(row["day"], row["sentiment"]): row["n"] for row in rows}

    def series(sentiment: str) -> list[int]:
        return [counts.get((day, sentiment), 0) for day in day_list]

    return SentimentSeries(
        days=day_list,
        positive=series(ConversationInsight.Sentiment.POSITIVE),
        neutral=series(ConversationInsight.Sentiment.NEUTRAL),
        negative=series(ConversationInsight.Sentiment.NEGATIVE),
    )


def runs_latest(*, bots) -> list[InsightRun]:
    """Each bot's latest run (bots without one are left out)."""
    latest = []
    for bot in bots:
        run = InsightRun.objects.filter(bot=bot).select_related("bot").order_by("-created_at", "-id").first()
        if run is not None:
            latest.append(run)
    return latest


def bots_without_model(*, bots) -> list[Bot]:
    """The bots whose insights are made without a model (no endpoint of their own, no TGI_URL)."""
    return [bot for bot in bots if not bot.endpoint]
