"""Reads of the dashboard: the conversation list (the inbox: its filters and pages), transcripts, leads and the
analytics series."""

import base64
import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chatbot.dashboard.quality import no_relevant_passage_q, unanswered_filter
from chatbot.models import Bot, Conversation, Lead, Message, TopicQuestion

INBOX_VIEWS = ("mine", "unassigned", "waiting")
STATUSES = ("open", "resolved")
PAGE_SIZE = 50


@dataclass(frozen=True)
class ConversationFilters:
    bot: str = ""  # slug
    date_from: date | None = None
    date_to: date | None = None
    has_lead: bool = False
    negative_feedback: bool = False
    handed_off: bool = False
    unanswered: bool = False
    q: str = ""
    # The inbox: "mine", "unassigned", "waiting" (for a human); each shows open conversations unless `status` says.
    view: str = ""
    status: str = ""  # "open" | "resolved" | "" (both)
    topic: int | None = None

    @classmethod
    def from_query(cls, params) -> "ConversationFilters":
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(params.get(name, ""))
            except ValueError:
                return None

        topic = params.get("topic", "")
        return cls(
            bot=params.get("bot", ""),
            date_from=day("from"),
            date_to=day("to"),
            has_lead=params.get("has_lead") == "1",
            negative_feedback=params.get("negative_feedback") == "1",
            handed_off=params.get("handed_off") == "1",
            unanswered=params.get("unanswered") == "1",
            q=params.get("q", "").strip()[:200],
            view=params.get("view", "") if params.get("view", "") in INBOX_VIEWS else "",
            status=params.get("status", "") if params.get("status", "") in STATUSES else "",
            topic=int(topic) if topic.isdigit() else None,
        )

    @property
    def effective_status(self) -> str:
        return self.status or ("open" if self.view else "")


class BadCursor(ValueError):
    """A page link that does not decode (edited, or from another version)."""


def cursor_encode(conversation: Conversation) -> str:
    raw = f"{conversation.last_message_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, conversation_id = raw.split("|", 1)
        moment = datetime.fromisoformat(when)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadCursor("That page link is not valid any more: showing the newest conversations.") from error
    if moment.tzinfo is None or not conversation_id:
        raise BadCursor("That page link is not valid any more: showing the newest conversations.")
    return moment, conversation_id


def waiting_for_human() -> Q:
    """Asked for a person, not resolved, and no staff message since they asked."""
    staff_replied = Exists(
        Message.objects.filter(
            conversation=OuterRef("pk"), role=Message.Role.STAFF, created_at__gte=OuterRef("handoff_requested_at")
        )
    )
    return Q(handoff_requested_at__isnull=False, resolved_at__isnull=True) & ~Q(staff_replied)


def waiting_for_human_flag() -> ExpressionWrapper:
    return ExpressionWrapper(waiting_for_human(), output_field=BooleanField())


def _search(q: str) -> Q:
    """Words in any message (a trigram index serves the ILIKE), a conversation or visitor id, a lead's email or name."""
    in_messages = Message.objects.filter(text__icontains=q).values("conversation_id")
    in_leads = Lead.objects.filter(Q(email__icontains=q) | Q(name__icontains=q)).exclude(conversation=None)
    return Q(id=q) | Q(visitor_id=q) | Q(id__in=in_messages) | Q(id__in=in_leads.values("conversation_id"))


@dataclass
class ConversationPage:
    conversations: list[Conversation]
    next_cursor: str = ""


def conversation_page(
    *,
    bots: QuerySet[Bot],
    filters: ConversationFilters,
    user=None,
    cursor: str = "",
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> ConversationPage:
    """A page of conversations with at least one message, most recent activity first, each with `.preview` (the
    visitor's last message), `.has_lead` and `.waiting`. `cursor` (from the previous page's `next_cursor`) continues
    after that page's last row: pages stay right while new conversations arrive, and cost the same however deep.
    `offset` skips that many rows first (the API's deprecated paging; the database still reads them).
    Raises BadCursor for a cursor that does not decode."""
    last_visitor_text = (
        Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.VISITOR)
        .order_by("-created_at", "-id")
        .values("text")[:1]
    )
    conversations = (
        Conversation.objects.filter(bot__in=bots)
        .filter(Exists(Message.objects.filter(conversation=OuterRef("pk"))))
        .select_related("bot", "taken_over_by", "assigned_to__staff_member")
        .annotate(
            preview=Subquery(last_visitor_text),
            has_lead=Exists(Lead.objects.filter(conversation=OuterRef("pk"))),
        )
    )
    if filters.bot:
        conversations = conversations.filter(bot__slug=filters.bot)
    if filters.date_from:
        conversations = conversations.filter(last_message_at__date__gte=filters.date_from)
    if filters.date_to:
        conversations = conversations.filter(started_at__date__lte=filters.date_to)
    if filters.has_lead:
        conversations = conversations.filter(has_lead=True)
    if filters.negative_feedback:
        conversations = conversations.filter(
            Exists(Message.objects.filter(conversation=OuterRef("pk"), feedback=Message.Feedback.DOWN))
        )
    if filters.handed_off:
        staff_wrote = Exists(Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.STAFF))
        conversations = conversations.filter(
            Q(handoff_requested_at__isnull=False) | Q(taken_over_by__isnull=False) | staff_wrote
        )
    if filters.unanswered:
        conversations = conversations.filter(id__in=Conversation.objects.filter(unanswered_filter()).values("id"))
    if filters.q:
        conversations = conversations.filter(_search(filters.q))
    if filters.view == "mine":
        conversations = conversations.filter(assigned_to=user) if user is not None else conversations.none()
    elif filters.view == "unassigned":
        conversations = conversations.filter(assigned_to__isnull=True)
    elif filters.view == "waiting":
        conversations = conversations.filter(waiting_for_human())
    if filters.effective_status == "open":
        conversations = conversations.filter(resolved_at__isnull=True)
    elif filters.effective_status == "resolved":
        conversations = conversations.filter(resolved_at__isnull=False)
    if filters.topic is not None:
        conversations = conversations.filter(
            id__in=TopicQuestion.objects.filter(topic_id=filters.topic).values("conversation_id")
        )
    if cursor:
        after_time, after_id = cursor_decode(cursor)
        conversations = conversations.filter(
            Q(last_message_at__lt=after_time) | Q(last_message_at=after_time, id__lt=after_id)
        )
    rows = list(
        conversations.annotate(waiting=waiting_for_human_flag()).order_by("-last_message_at", "-id")[
            offset : offset + limit + 1
        ]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ConversationPage(conversations=rows, next_cursor=cursor_encode(rows[-1]) if more else "")


def conversation_list(
    *, bots: QuerySet[Bot], filters: ConversationFilters, limit: int = 100, user=None
) -> list[Conversation]:
    """The first `limit` conversations of `conversation_page` (the newest)."""
    return conversation_page(bots=bots, filters=filters, user=user, limit=limit).conversations


def transcript(*, conversation: Conversation) -> list[Message]:
    return list(
        conversation.messages.select_related("staff_user", "in_reply_to", "corrected_by__staff_member").order_by(
            "created_at", "id"
        )
    )


def conversation_next_of_visitor(*, conversation: Conversation) -> Conversation | None:
    """The conversation the visitor started after this one (the widget's "New conversation"), if they did: the
    one they now see, where staff should write to reach them."""
    return (
        Conversation.objects.filter(
            bot_id=conversation.bot_id, visitor_id=conversation.visitor_id, started_at__gt=conversation.started_at
        )
        .order_by("started_at")
        .first()
    )


def transcript_after(*, conversation_id: str, after_message_id: int, limit: int = 200) -> list[Message]:
    """The conversation's messages saved after the one a page last showed (ids grow with time)."""
    return list(
        Message.objects.filter(conversation_id=conversation_id, id__gt=after_message_id)
        .select_related("staff_user")
        .order_by("id")[:limit]
    )


def leads_of(*, bot: Bot, limit: int = 500) -> list[Lead]:
    return list(Lead.objects.filter(bot=bot).select_related("conversation").order_by("-created_at")[:limit])


# --- analytics ---


@dataclass
class Analytics:
    days: list[date]
    conversations: list[int]
    bot_only: list[int]
    with_human: list[int]
    feedback_up: list[int]
    feedback_down: list[int]
    leads: list[int]
    ttft_median_ms: list[float | None]
    ttft_p90_ms: list[float | None]
    tokens_by_bot: list[tuple[str, int]]
    # Questions answered with nothing relevant from the knowledge base: the quality page's "No relevant passage".
    unanswered: list[int] | None = None

    @property
    def totals(self) -> dict[str, int]:
        answered = sum(self.bot_only)
        total = answered + sum(self.with_human)
        return {
            "conversations": sum(self.conversations),
            "answered_without_human_pct": round(100 * answered / total) if total else 0,
            "feedback_up": sum(self.feedback_up),
            "feedback_down": sum(self.feedback_down),
            "leads": sum(self.leads),
            "unanswered_questions": sum(self.unanswered or []),
            "tokens": sum(tokens for _, tokens in self.tokens_by_bot),
        }


def _per_day(rows, days: list[date], key: str = "n") -> list[int]:
    by_day = {row["day"]: row[key] for row in rows}
    return [by_day.get(day, 0) for day in days]


def analytics(*, bots: QuerySet[Bot], days: int = 30, today: date | None = None) -> Analytics:
    today = today or timezone.localdate()
    day_list = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    since = timezone.make_aware(datetime.combine(day_list[0], datetime.min.time()))
    conversations = Conversation.objects.filter(bot__in=bots, started_at__gte=since).filter(
        Exists(Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.VISITOR))
    )
    human = (
        Q(handoff_requested_at__isnull=False)
        | Q(taken_over_by__isnull=False)
        | Exists(Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.STAFF))
    )
    per_day = conversations.annotate(day=TruncDate("started_at")).values("day")
    total = per_day.annotate(n=Count("id"))
    with_human = per_day.filter(human).annotate(n=Count("id"))
    conversation_counts = _per_day(total, day_list)
    human_counts = _per_day(with_human, day_list)

    answers = Message.objects.filter(role=Message.Role.BOT, conversation__bot__in=bots, created_at__gte=since)
    gaps = (
        answers.exclude(in_reply_to=None)
        .exclude(status=Message.Status.STREAMING)
        .filter(no_relevant_passage_q())
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    )
    feedback = answers.exclude(feedback="").annotate(day=TruncDate("created_at")).values("day")
    up = feedback.filter(feedback=Message.Feedback.UP).annotate(n=Count("id"))
    down = feedback.filter(feedback=Message.Feedback.DOWN).annotate(n=Count("id"))
    leads = (
        Lead.objects.filter(bot__in=bots, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    )

    ttfts: dict[date, list[float]] = {}
    for day, ttft in answers.exclude(ttft_ms=None).annotate(day=TruncDate("created_at")).values_list("day", "ttft_ms"):
        ttfts.setdefault(day, []).append(ttft)

    def quantile(values: list[float], q: float) -> float | None:
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]

    tokens = (
        answers.values("conversation__bot__name")
        .annotate(n=Sum("completion_tokens"))
        .order_by("-n", "conversation__bot__name")
    )
    return Analytics(
        days=day_list,
        conversations=conversation_counts,
        bot_only=[n - h for n, h in zip(conversation_counts, human_counts, strict=True)],
        with_human=human_counts,
        feedback_up=_per_day(up, day_list),
        feedback_down=_per_day(down, day_list),
        leads=_per_day(leads, day_list),
        ttft_median_ms=[quantile(ttfts.get(day, []), 0.5) for day in day_list],
        ttft_p90_ms=[quantile(ttfts.get(day, []), 0.9) for day in day_list],
        tokens_by_bot=[(row["conversation__bot__name"], row["n"] or 0) for row in tokens],
        unanswered=_per_day(gaps, day_list),
    )
