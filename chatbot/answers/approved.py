"""Approved answers: answers staff wrote or approved, returned verbatim (no model call) to questions close to theirs.
The dashboard's quality page writes them; the answer pipeline looks them up first."""

from django.conf import settings
from django.db import transaction
from django.db.models import F
from pgvector.django import CosineDistance

from chatbot.models import ApprovedAnswer, Bot
from knowledge.embeddings import get_embedder
from knowledge.services import source_add_faq
from knowledge.tasks import source_ingest_after_commit

# Cosine similarity (all-MiniLM-L6-v2) from which a new question gets an approved answer verbatim. Measured:
# paraphrases score 0.82–0.97 ("I forgot my password, how can I change it?" ~ "How do I reset my password?" 0.89);
# near but different questions score up to 0.80 ("discount for teachers" ~ "student discount" 0.79, "ship to
# Canada" ~ "ship abroad" 0.75). A verbatim answer to the wrong question is worse than a generated one.
APPROVED_ANSWER_MIN_SIMILARITY = 0.82
# Finish reason the answer pipeline records for an approved answer (no model call, no retrieval needed).
APPROVED_ANSWER_FINISH_REASON = "approved_answer"


def question_embedding(text: str) -> list[float]:
    return get_embedder(settings.EMBEDDING_URL or None).embed_query(" ".join(text.split()))


def approved_answer_for(
    *, bot: Bot, question: str, embedding: list[float] | None = None, min_similarity: float | None = None
) -> ApprovedAnswer | None:
    """The bot's approved answer to return verbatim for `question`, or None when none is close enough.
    Pass `embedding` when the question is already embedded. The result carries `.similarity`."""
    if not question.strip() or not ApprovedAnswer.objects.filter(bot=bot).exists():
        return None
    vector = embedding if embedding is not None else question_embedding(question)
    best = (
        ApprovedAnswer.objects.filter(bot=bot)
        .annotate(distance=CosineDistance("embedding", vector))
        .order_by("distance", "-created_at")
        .first()
    )
    threshold = APPROVED_ANSWER_MIN_SIMILARITY if min_similarity is None else min_similarity
    if best is None or 1.0 - best.distance < threshold:
        return None
    best.similarity = 1.0 - best.distance
    return best


@transaction.atomic
def approved_answer_add(*, bot: Bot, question: str, answer: str, user=None, add_faq: bool = True) -> ApprovedAnswer:
    """An answer the bot returns verbatim to questions close to `question`; also an FAQ entry of its knowledge base
    (ingested after commit), so questions merely near it find the answer through retrieval."""
    approved = ApprovedAnswer.objects.create(
        bot=bot,
        question=question.strip(),
        answer=answer.strip(),
        embedding=question_embedding(question),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    if add_faq and bot.knowledge_base_id is not None:
        source = source_add_faq(knowledge_base=bot.knowledge_base, question=approved.question, answer=approved.answer)
        source_ingest_after_commit(source)
    return approved


def approved_answer_use(*, approved_answer: ApprovedAnswer) -> None:
    ApprovedAnswer.objects.filter(id=approved_answer.id).update(times_used=F("times_used") + 1)


def approved_answer_delete(*, approved_answer: ApprovedAnswer) -> None:
    approved_answer.delete()
