"""The answer pipeline, run by a Celery worker for each bot message:

load the conversation → retrieve passages → build the prompt within the model's budget → stream from the model
server → relay text to the conversation's channel-layer group as it arrives → save the final message once.

Retrieval reads the question in the light of the visitor's earlier messages (knowledge.conversation; a first
question is searched exactly as on its own), and sends the model as many of the ranked passages as are relevant
enough and fit its prompt, up to the bot's `max_passages` (knowledge.passages); the saved trace says which were sent
and why the others were not. No database connection is held while the model streams, and nothing is written per
token. Without a model, or when it fails, the visitor gets an extractive answer from the passages, with citations
(chatbot.answers.fallback).
"""

import dataclasses
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from chatbot.answers.approved import APPROVED_ANSWER_FINISH_REASON, approved_answer_for, approved_answer_use
from chatbot.answers.fallback import extractive_outcome
from chatbot.answers.generation import answer_with_model
from chatbot.answers.outcome import AnswerOutcome, passage_of
from chatbot.answers.progress import answer_progress_start
from chatbot.answers.storage import answer_message_finish, answer_message_load, conversation_messages_before
from chatbot.answers.texts import answer_text, text_language
from chatbot.leads.triggers import lead_form_after_answer
from chatbot.models import ApprovedAnswer, Bot, Message
from chatbot.ops import metrics
from chatbot.realtime.protocol import done_event, error_event, token_event, typing_event
from chatbot.realtime.relay import relay
from chatbot.webhooks.events import message_created_emit
from inference.prompts import Turn
from knowledge.conversation import conversation_search
from knowledge.embeddings import QueryEmbedding, embedder_in_use, get_embedder
from knowledge.passages import PassageChoice, PassageDecision, passages_choose
from knowledge.retrieval import SearchResult

logger = logging.getLogger(__name__)

COALESCE_INTERVAL_S = 0.02
HISTORY_MESSAGES = 20


@dataclass(frozen=True)
class History:
    """The conversation before the question: its turns for the prompt (oldest first), the visitor's earlier
    messages (oldest first) and the passages of the bot's previous answer (best first) for retrieval."""

    turns: list[Turn]
    visitor_messages: list[str]
    previous_chunk_ids: list[int]


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
    question_embedding = question_embedding_soon(question_hint) if question_hint else None
    message = answer_message_load(message_id)
    if message is None:
        return
    conversation = message.conversation
    bot = conversation.bot
    group = conversation.group_name
    question = message.in_reply_to.text if message.in_reply_to else ""
    # What Parley says itself (no passage in strict mode, the model down) is in the visitor's language.
    language = text_language(conversation.language, bot.language)
    if question_embedding is None or question != question_hint:
        question_embedding = question_embedding_soon(question)
    history = _history(message)
    relay().group_send_nowait(group, typing_event(message_id=message.id))

    approved = None
    if message.bot_has_approved_answers:
        embedded = _embedding_wait(question_embedding)
        approved = _approved_answer(bot, question, embedded.vector if embedded else None)
    # Retrieval takes the embedding still under way: its full-text half runs while the embedding finishes.
    search = None if approved else _retrieve(bot, question, question_embedding, history)
    if not message.bot_has_approved_answers:
        embedded = _embedding_wait(question_embedding)  # done by now: the search waited for it
    choice = _passages_choose(search, max_passages=bot.max_passages)
    passages = [passage_of(n, chunk) for n, chunk in enumerate(choice.sent, 1)]
    question_vector = embedded.vector if embedded else None
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
        outcome = extractive_outcome(
            question=question,
            question_vector=question_vector,
            chunks=choice.sent,
            reason="not_configured",
            model_failed=False,
            language=language,
        )
        metrics.ANSWERS.labels(bot=bot.slug, outcome="retrieval_only").inc()
    else:
        outcome = answer_with_model(
            message_id=message.id,
            bot=bot,
            group=group,
            passages=passages,
            history=history.turns,
            question=question,
            chunks=choice.sent,
            question_vector=question_vector,
            started=started,
            coalesce_interval_s=coalesce_interval_s,
            language=language,
        )

    total_ms = (time.monotonic() - started) * 1000
    close_old_connections()
    # Only while still streaming: the watchdog may have ended it already (this worker was thought lost).
    saved = answer_message_finish(
        message.id,
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
        retrieved=_trace(search, _over_budget(choice, outcome.passages_over_budget)),
        prompt=outcome.prompt,
        finished_at=timezone.now(),
    )
    if not saved:
        logger.warning("message %s was no longer streaming when its answer ended; not sent", message.id)
        return
    if search is not None:
        metrics.RETRIEVAL_SECONDS.observe(retrieval_ms / 1000)
    done = done_event(message_id=message.id, status=outcome.status, citations=outcome.citations, text=outcome.text)
    ended = [(group, done)]
    if outcome.error_code:
        ended.append((group, error_event(outcome.error_code, outcome.error_message)))
    relay().group_send_many(ended)
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


def _history(message: Message) -> History:
    earlier = (
        conversation_messages_before(
            conversation_id=message.conversation_id, before=message.in_reply_to.created_at, limit=HISTORY_MESSAGES
        )
        if message.in_reply_to and message.has_earlier_messages
        else []
    )
    oldest_first = list(reversed(earlier))
    previous_answer = next((m for m in earlier if m.role == Message.Role.BOT), None)
    return History(
        turns=[
            Turn(role="user" if m.role == Message.Role.VISITOR else "assistant", text=m.text)
            for m in oldest_first
            if m.text
        ],
        visitor_messages=[m.text for m in oldest_first if m.role == Message.Role.VISITOR and m.text.strip()],
        previous_chunk_ids=_sent_chunk_ids(previous_answer.retrieved if previous_answer else []),
    )


def _sent_chunk_ids(trace: list[dict] | None) -> list[int]:
    """The passages an answer sent the model, best first (a trace saved before `sent` existed: all of them)."""
    if not isinstance(trace, list):
        return []
    return [p["chunk_id"] for p in trace if isinstance(p, dict) and "chunk_id" in p and p.get("sent", True)]


def question_embedding_soon(question: str) -> Future | None:
    """The question's embedding, started now (or joined, when it is under way already); None if it could not be."""
    if not question.strip():
        return None
    try:
        return get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(question)
    except Exception:
        logger.exception("could not start the question's embedding")
        return None


def question_embedding_early(question: str) -> None:
    """Start the question's embedding ahead of its answer, if this process has its embedder ready. Never waits:
    it runs on Celery's consumer thread, which must not hang on a slow or unreachable embedding server (the
    answer's thread makes the embedder then, as before)."""
    embedder = embedder_in_use(settings.EMBEDDING_URL or None)
    if embedder is None or not question.strip():
        return
    try:
        embedder.embed_query_soon(question)
    except Exception:
        logger.exception("could not start the question's embedding early")


def _embedding_wait(embedding: Future | None) -> QueryEmbedding | None:
    """The question's embedding, None if it could not be computed (retrieval computes it again)."""
    if embedding is None:
        return None
    try:
        return embedding.result()
    except Exception:
        logger.exception("could not embed the question")
        return None


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


def _retrieve(bot: Bot, question: str, embedding_soon: Future | None, history: History) -> SearchResult | None:
    if bot.knowledge_base_id is None or not question:
        return None
    try:
        # Without earlier visitor messages this is chunk_search with the question's embedding: no statement or
        # forward pass more for a first question. The optional rewrite by the model is not wired (rewrite=None):
        # it would put a model round trip before every follow-up's first token.
        search = conversation_search(
            knowledge_base_id=bot.knowledge_base_id,
            question=question,
            history=history.visitor_messages,
            previous_chunk_ids=history.previous_chunk_ids,
            k=bot.max_passages,
            embedding_soon=embedding_soon,
        )
    except Exception:
        logger.exception("retrieval failed for bot %s; answering without passages", bot.slug)
        return None
    return search


def _passages_choose(search: SearchResult | None, *, max_passages: int) -> PassageChoice:
    """The passages to send, in rank order. A search that found nothing relevant sends nothing."""
    if search is None:
        return PassageChoice(decisions=[])
    choice = passages_choose(chunks=search.chunks, max_passages=max_passages)
    if search.relevant:
        return choice
    return PassageChoice(
        decisions=[dataclasses.replace(d, cut="below_relevance") if d.sent else d for d in choice.decisions]
    )


def _over_budget(choice: PassageChoice, passage_numbers: list[int]) -> PassageChoice:
    """`choice` with the sent passages the prompt left out (by their number in the prompt, from 1) marked."""
    sent = choice.sent
    return choice.over_budget({sent[n - 1].chunk_id for n in passage_numbers if 0 < n <= len(sent)})


def _trace(search: SearchResult | None, choice: PassageChoice) -> list[dict]:
    """Every passage the search ranked, in order, whether it was sent and why not (`cut`: below_relevance,
    over_max or over_budget), and which search ran (`context`: none, standalone, follow_up, rewritten)."""
    if search is None:
        return []
    decisions: dict[int, PassageDecision] = {d.chunk.chunk_id: d for d in choice.decisions}
    return [
        {
            "chunk_id": chunk.chunk_id,
            "sent": decisions[chunk.chunk_id].sent if chunk.chunk_id in decisions else False,
            "cut": decisions[chunk.chunk_id].cut if chunk.chunk_id in decisions else "over_max",
            "context": search.context,
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
