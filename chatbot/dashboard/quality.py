"""What the bots could not answer, grouped by similar question; and the approved answers that fill the gaps.

A question counts as unanswered when its bot answer found no relevant passage (finish reason
"no_relevant_passages", no retrieved passage at or above MIN_RELEVANCE in its trace, or an answer from the
documentation that cites nothing), when the visitor voted it down, or when the visitor asked for a person after it.
An answer from the documentation (status retrieval_only: no model, or the model failed) that cites a relevant
passage counts as answered, here and in analytics (`no_relevant_passage_q`).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Q
from django.utils import timezone

from chatbot.answers.approved import APPROVED_ANSWER_FINISH_REASON, APPROVED_ANSWER_MIN_SIMILARITY
from chatbot.chat.handoff import human_requested
from chatbot.insights.vectors import question_vectors
from chatbot.models import ApprovedAnswer, Conversation, Message
from knowledge.retrieval import MIN_RELEVANCE

# Questions this similar to a group's first question join the group.
GROUP_MIN_SIMILARITY = 0.70
UNANSWERED_LOOKBACK_DAYS = 30
UNANSWERED_MAX_QUESTIONS = 500


# --- unanswered questions ---


@dataclass
class UnansweredQuestion:
    text: str
    reason: str  # "no_passage" | "thumbs_down" | "asked_human"
    conversation_id: str
    bot_id: int
    at: datetime


@dataclass
class QuestionGroup:
    questions: list[UnansweredQuestion] = field(default_factory=list)

    @property
    def question(self) -> str:
        """The group's representative: its first (most recent) question."""
        return self.questions[0].text

    @property
    def reasons(self) -> list[str]:
        return sorted({q.reason for q in self.questions})

    @property
    def bot_id(self) -> int:
        return self.questions[0].bot_id

    @property
    def count(self) -> int:
        return len(self.questions)


def no_relevant_passage(message: Message) -> bool:
    """Whether a bot answer found nothing relevant to answer from (`no_relevant_passage_q` in SQL)."""
    if message.finish_reason == "no_relevant_passages":
        return True
    if message.finish_reason == APPROVED_ANSWER_FINISH_REASON:
        return False
    if message.status == Message.Status.RETRIEVAL_ONLY and not message.citations:
        return True
    if message.status not in (Message.Status.COMPLETE, Message.Status.RETRIEVAL_ONLY):
        return False
    return not any((passage.get("similarity") or 0) >= MIN_RELEVANCE for passage in message.retrieved or [])


def no_relevant_passage_q() -> Q:
    """Bot answers (Message rows) that found nothing relevant to answer from: `no_relevant_passage` in SQL."""
    from django.db.models.expressions import RawSQL

    without_relevant_passage = RawSQL(
        "SELECT m.id FROM chatbot_message m WHERE m.role = 'bot' AND m.status IN ('complete', 'retrieval_only') "
        "AND m.finish_reason <> %s AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements("
        "CASE WHEN jsonb_typeof(m.retrieved) = 'array' THEN m.retrieved ELSE '[]'::jsonb END) AS p "
        "WHERE (p->>'similarity')::float >= %s)",
        (APPROVED_ANSWER_FINISH_REASON, MIN_RELEVANCE),
    )
    return (
        Q(finish_reason="no_relevant_passages")
        | Q(status=Message.Status.RETRIEVAL_ONLY, citations=[])
        | Q(id__in=without_relevant_passage)
    )


def unanswered_questions(*, bots, since: datetime | None = None) -> list[UnansweredQuestion]:
    """Visitor questions the bots of `bots` (a queryset or list) did not answer well, newest first."""
    since = since or timezone.now() - timedelta(days=UNANSWERED_LOOKBACK_DAYS)
    answers = (
        Message.objects.filter(role=Message.Role.BOT, conversation__bot__in=bots, created_at__gte=since)
        .exclude(in_reply_to=None)
        .exclude(status=Message.Status.STREAMING)
        .select_related("in_reply_to", "conversation")
        .defer("prompt")
        .order_by("-created_at")[:UNANSWERED_MAX_QUESTIONS]
    )
    found: list[UnansweredQuestion] = []
    seen: set[int] = set()
    for answer in answers:
        reason = None
        if answer.feedback == Message.Feedback.DOWN:
            reason = "thumbs_down"
        elif no_relevant_passage(answer):
            reason = "no_passage"
        if reason and not human_requested(answer.in_reply_to.text):
            seen.add(answer.in_reply_to_id)
            found.append(
                UnansweredQuestion(
                    text=answer.in_reply_to.text,
                    reason=reason,
                    conversation_id=answer.conversation_id,
                    bot_id=answer.conversation.bot_id,
                    at=answer.in_reply_to.created_at,
                )
            )
    # Asked for a person: the question they had before they asked (the last one that was not the request itself).
    handed_off = Conversation.objects.filter(bot__in=bots, handoff_requested_at__gte=since).order_by(
        "-handoff_requested_at"
    )[:UNANSWERED_MAX_QUESTIONS]
    for conversation in handed_off:
        before = conversation.messages.filter(
            role=Message.Role.VISITOR, created_at__lte=conversation.handoff_requested_at
        ).order_by("-created_at", "-id")[:5]
        question = next((m for m in before if not human_requested(m.text)), None)
        if question is not None and question.id not in seen:
            seen.add(question.id)
            found.append(
                UnansweredQuestion(
                    text=question.text,
                    reason="asked_human",
                    conversation_id=conversation.id,
                    bot_id=conversation.bot_id,
                    at=question.created_at,
                )
            )
    found.sort(key=lambda q: q.at, reverse=True)
    return found


def questions_group(
    questions: list[UnansweredQuestion], *, min_similarity: float = GROUP_MIN_SIMILARITY
) -> list[QuestionGroup]:
    """Greedy clustering: each question joins the first group (of the same bot) whose first question is at least
    `min_similarity` similar, or starts a new one. Largest groups first; order within a group is kept."""
    if not questions:
        return []
    vectors = question_vectors([q.text for q in questions])
    groups: list[QuestionGroup] = []
    leaders: list[int] = []
    for index, question in enumerate(questions):
        best, best_similarity = None, min_similarity
        for group_index, leader in enumerate(leaders):
            if groups[group_index].bot_id != question.bot_id:
                continue
            similarity = float(vectors[index] @ vectors[leader])
            if similarity >= best_similarity:
                best, best_similarity = group_index, similarity
        if best is None:
            groups.append(QuestionGroup(questions=[question]))
            leaders.append(index)
        else:
            groups[best].questions.append(question)
    return sorted(groups, key=lambda group: -group.count)


def unanswered_groups(*, bots, since: datetime | None = None) -> list[QuestionGroup]:
    """The unanswered questions of `bots`, grouped, without those an approved answer now covers."""
    questions = unanswered_questions(bots=bots, since=since)
    if not questions:
        return []
    vectors = question_vectors([q.text for q in questions])
    approved_by_bot: dict[int, list[np.ndarray]] = {}
    for approved in ApprovedAnswer.objects.filter(bot__in=bots).only("bot_id", "embedding"):
        approved_by_bot.setdefault(approved.bot_id, []).append(np.asarray(approved.embedding, dtype=np.float32))
    open_questions = []
    for index, question in enumerate(questions):
        covered = approved_by_bot.get(question.bot_id)
        if covered and max(float(vectors[index] @ v) for v in covered) >= APPROVED_ANSWER_MIN_SIMILARITY:
            continue
        open_questions.append(question)
    return questions_group(open_questions)


def unanswered_filter() -> Q:
    """Conversations with an unanswered question (for the conversation list's filter; the same rules in SQL)."""
    answers = Message.objects.filter(role=Message.Role.BOT).filter(no_relevant_passage_q())
    return Q(id__in=answers.values("conversation_id"))
