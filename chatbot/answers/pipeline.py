"""The answer pipeline, run by a Celery worker for each bot message:

load the conversation → retrieve passages → build the prompt within the model's budget → stream from the model
server → relay text to the conversation's channel-layer group as it arrives → save the final message once.

No database connection is held while the model streams, and nothing is written per token. When the model server
cannot be used, the visitor still gets the most relevant passages with their links ("retrieval-only").
"""

import dataclasses
import logging
import time
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from chatbot.answers.approved import APPROVED_ANSWER_FINISH_REASON, approved_answer_for, approved_answer_use
from chatbot.answers.fallback import retrieval_only_outcome
from chatbot.answers.generation import answer_with_model
from chatbot.answers.outcome import AnswerOutcome, passage_of
from chatbot.answers.progress import answer_progress_start
from chatbot.answers.texts import answer_text, text_language
from chatbot.leads.triggers import lead_form_after_answer
from chatbot.models import ApprovedAnswer, Bot, Message
from chatbot.ops import metrics
from chatbot.realtime.protocol import done_event, error_event, token_event, typing_event
from chatbot.realtime.relay import relay
from chatbot.webhooks.events import message_created_emit
from inference.prompts import Turn
from knowledge.embeddings import QueryEmbedding, get_embedder
from knowledge.retrieval import SearchResult, chunk_search

logger = logging.getLogger(__name__)

COALESCE_INTERVAL_S = 0.02
PASSAGES_PER_ANSWER = 5
HISTORY_MESSAGES = 20


def answer_generate(
    *, message_id: int, coalesce_interval_s: float = COALESCE_INTERVAL_S, question_hint: str | None = None
) -> None:
    """Answer the visitor message that bot message `message_id` replies to. Safe to call twice. `question_hint`, the
    visitor's text when the caller has it, starts the question's embedding while the message loads."""
    # A heartbeat and the text so far go to Redis while this runs (chatbot.answers.progress): if this process dies, the
    # visitor's consumer ends the answer with what was checkpointed.
    progress = answer_progress_start(message_id=message_id)
    try:
        _answer_generate(message_id=message_id, coalesce_interval_s=coalesce_interval_s, question_hint=question_hint)
    except BaseException:
        # Stop beating but keep the checkpoint: the visitor's consumer ends the answer as for a lost worker.
        progress.abandon()
        raise
    progress.finish()


def _answer_generate(*, message_id: int, coalesce_interval_s: float, question_hint: str | None) -> None:
    started = time.monotonic()
    # The question's vector is computed while the message and the history load and the typing indicator goes out.
    question_vector = _question_embedding_soon(question_hint) if question_hint else None
    message = (
        Message.objects.select_related("conversation__bot", "in_reply_to")
        .filter(id=message_id, status=Message.Status.STREAMING)
        .first()
    )
    if message is None:
        return
    conversation = message.conversation
    bot = conversation.bot
    group = conversation.group_name
    question = message.in_reply_to.text if message.in_reply_to else ""
    # What Parley says itself (no passage in strict mode, the model down) is in the visitor's language.
    language = text_language(conversation.language, bot.language)
    if question_vector is None or question != question_hint:
        question_vector = _question_embedding_soon(question)
    history = _history(message)
    relay().group_send_nowait(group, typing_event(message_id=message.id))
    embedded, embed_ms = _embedding_wait(question_vector, since=started)

    approved = _approved_answer(bot, question, embedded.vector if embedded else None)
    search = None if approved else _retrieve(bot, question, embedded, embed_ms=embed_ms)
    passages = [passage_of(n, chunk) for n, chunk in enumerate(search.chunks if search and search.relevant else [], 1)]
    retrieval_ms = (search.embed_ms + search.search_ms) if search else 0.0
    # Nothing below needs the database until the final save: give the connection back while the model streams.
    connection.close()

    if approved is not None:
        outcome = _approved_outcome(approved, group=group, message_id=message.id, started=started)
        metrics.ANSWERS.labels(bot=bot.slug, outcome="approved_answer").inc()
    elif bot.strict_mode and not passages:
        outcome = AnswerOutcome(text=answer_text("strict_no_answer", language), finish_reason="no_relevant_passages")
        metrics.ANSWERS.labels(bot=bot.slug, outcome="no_relevant_passages").inc()
    elif not bot.endpoint:
        outcome = retrieval_only_outcome(search, reason="not_configured", language=language)
        metrics.ANSWERS.labels(bot=bot.slug, outcome="retrieval_only").inc()
    else:
        outcome = answer_with_model(
            message_id=message.id,
            bot=bot,
            group=group,
            passages=passages,
            history=history,
            question=question,
            search=search,
            started=started,
            coalesce_interval_s=coalesce_interval_s,
            language=language,
        )

    total_ms = (time.monotonic() - started) * 1000
    close_old_connections()
    # Only while still streaming: the watchdog may have ended it already (this worker was thought lost).
    saved = Message.objects.filter(id=message.id, status=Message.Status.STREAMING).update(
        text=outcome.text,
        status=outcome.status,
        citations=outcome.citations,
        error_code=outcome.error_code,
        finish_reason=outcome.finish_reason,
        model=outcome.model,
        adapter_id=bot.adapter_id,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        ttft_ms=outcome.ttft_ms,
        total_ms=total_ms,
        retrieved=_trace(search),
        prompt=outcome.prompt,
        finished_at=timezone.now(),
    )
    if not saved:
        logger.warning("message %s was no longer streaming when its answer ended; not sent", message.id)
        return
    if search is not None:
        metrics.RETRIEVAL_SECONDS.observe(retrieval_ms / 1000)
    relay().group_send(
        group,
        done_event(message_id=message.id, status=outcome.status, citations=outcome.citations, text=outcome.text),
    )
    if outcome.error_code:
        relay().group_send(group, error_event(outcome.error_code, outcome.error_message))
    if approved is not None:
        approved_answer_use(approved_answer=approved)
    try:
        message_created_emit(bot=bot, message_id=message.id)
    except Exception:
        # Saved and sent: a webhook that could not be queued must not turn the answer into a failure.
        logger.exception("could not queue the message.created webhooks of message %s", message.id)
    try:
        lead_form_after_answer(conversation=conversation, question=question, outcome=outcome)
    except Exception:
        # The answer is saved and sent; a form that could not be offered must not turn it into a failure.
        logger.exception("could not offer the lead form after message %s", message.id)


def _history(message: Message) -> list[Turn]:
    earlier = (
        Message.objects.filter(conversation_id=message.conversation_id, created_at__lt=message.in_reply_to.created_at)
        .exclude(status__in=[Message.Status.STREAMING, Message.Status.ERROR])
        .order_by("-created_at", "-id")[:HISTORY_MESSAGES]
        if message.in_reply_to
        else []
    )
    turns = [Turn(role="user" if m.role == Message.Role.VISITOR else "assistant", text=m.text) for m in earlier]
    return [turn for turn in reversed(turns) if turn.text]


def _question_embedding_soon(question: str) -> Future | None:
    if not question.strip():
        return None
    try:
        return get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(question)
    except Exception:
        logger.exception("could not start the question's embedding")
        return None


def _embedding_wait(embedding: Future | None, *, since: float) -> tuple[QueryEmbedding | None, float]:
    """The question's embedding (None if it could not be computed) and how long the answer waited for it."""
    if embedding is None:
        return None, 0.0
    try:
        embedded = embedding.result()
    except Exception:
        logger.exception("could not embed the question; retrieval will try again")
        embedded = None
    return embedded, (time.monotonic() - since) * 1000


def _approved_answer(bot: Bot, question: str, embedding: list[float] | None) -> ApprovedAnswer | None:
    """Staff's approved answer for this question, returned verbatim instead of asking the model (the dashboard's
    "unanswered questions" page writes them)."""
    if embedding is None:
        return None
    try:
        return approved_answer_for(bot=bot, question=question, embedding=embedding)
    except Exception:
        logger.exception("could not look up approved answers for bot %s; answering as usual", bot.slug)
        return None


def _approved_outcome(approved: ApprovedAnswer, *, group: str, message_id: int, started: float) -> AnswerOutcome:
    relay().group_send(group, token_event(message_id=message_id, text=approved.answer))
    return AnswerOutcome(
        text=approved.answer,
        finish_reason=APPROVED_ANSWER_FINISH_REASON,
        ttft_ms=(time.monotonic() - started) * 1000,
    )


def _retrieve(bot: Bot, question: str, embedded: QueryEmbedding | None, *, embed_ms: float) -> SearchResult | None:
    if bot.knowledge_base_id is None or not question:
        return None
    try:
        search = chunk_search(
            knowledge_base_id=bot.knowledge_base_id,
            query=question,
            k=PASSAGES_PER_ANSWER,
            embedding=embedded.vector if embedded else None,
            query_tokens=embedded.tokens if embedded else None,
        )
    except Exception:
        logger.exception("retrieval failed for bot %s; answering without passages", bot.slug)
        return None
    if embedded is not None:
        # The embedding was computed before the search: report the wait for it as the search's embedding time.
        search = dataclasses.replace(search, embed_ms=embed_ms)
    return search


def _trace(search: SearchResult | None) -> list[dict]:
    if search is None:
        return []
    return [
        {
            "chunk_id": chunk.chunk_id,
            "title": chunk.title,
            "url": chunk.url,
            "heading_path": chunk.heading_path,
            "score": round(chunk.score, 5),
            "similarity": None if chunk.similarity is None else round(chunk.similarity, 4),
            "vector_rank": chunk.vector_rank,
            "text_rank": chunk.text_rank,
            "rerank_score": None if chunk.rerank_score is None else round(chunk.rerank_score, 5),
            "text": chunk.text[:500],
        }
        for chunk in search.chunks
    ]
