"""The answer pipeline, run by a Celery worker for each bot message:

load the conversation → retrieve passages → build the prompt within the model's budget → stream from the model
server → relay text to the conversation's channel-layer group as it arrives → save the final message once.

No database connection is held while the model streams, and nothing is written per token. When the model server
cannot be used, the visitor still gets the most relevant passages with their links ("retrieval-only").
"""

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from chatbot import circuit, leads, metrics, output_guard, redis_keys, watchdog
from chatbot.dashboard.quality import approved_answer_for
from chatbot.dashboard.services import approved_answer_use
from chatbot.models import ApprovedAnswer, Bot, Message
from chatbot.protocol import Citation
from chatbot.relay import TokenCoalescer, relay
from inference.budget import BuiltPrompt, PromptBudgetError, build_prompt
from inference.client import (
    GenerationSettings,
    ModelServerError,
    StreamDelta,
    StreamEnd,
    count_tokens,
    estimate_tokens,
    model_info,
    stream_chat,
)
from inference.prompts import Passage, Turn, extract_citations
from knowledge.embeddings import QueryEmbedding, get_embedder
from knowledge.retrieval import RetrievedChunk, SearchResult, chunk_search

logger = logging.getLogger(__name__)

COALESCE_INTERVAL_S = 0.02
PASSAGES_PER_ANSWER = 5
HISTORY_MESSAGES = 20
STOP_CHECK_INTERVAL_S = 0.02

STRICT_NO_ANSWER = (
    "I'm sorry, I couldn't find anything about that in our documentation, so I'd rather not guess. "
    "You can ask for a person from our team, or leave your details and we'll get back to you."
)
MODEL_DOWN_WITH_PASSAGES = (
    "I can't write a full answer right now, but these passages from our documentation look relevant:"
)
MODEL_DOWN_NO_PASSAGES = (
    "I'm sorry, I can't answer right now. Please try again in a few minutes, or ask for a person from our team."
)


@dataclass
class AnswerOutcome:
    text: str = ""
    status: str = Message.Status.COMPLETE
    citations: list[Citation] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    finish_reason: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    prompt: list[dict] = field(default_factory=list)


def answer_generate(*, message_id: int, coalesce_interval_s: float = COALESCE_INTERVAL_S) -> None:
    """Answer the visitor message that bot message `message_id` replies to. Safe to call twice."""
    # A heartbeat and the text so far go to Redis while this runs (chatbot.watchdog): if this process dies, the
    # visitor's consumer ends the answer with what was checkpointed.
    progress = watchdog.answer_progress_start(message_id=message_id)
    try:
        _answer_generate(message_id=message_id, coalesce_interval_s=coalesce_interval_s)
    except BaseException:
        # Stop beating but keep the checkpoint: the visitor's consumer ends the answer as for a lost worker.
        progress.abandon()
        raise
    progress.finish()


def _answer_generate(*, message_id: int, coalesce_interval_s: float) -> None:
    started = time.monotonic()
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
    # The question's vector is computed while the history loads and the typing indicator goes out.
    question_vector = _question_embedding_soon(bot, question)
    history = _history(message)
    relay().group_send(group, {"type": "chat.typing", "message_id": message.id})
    embedded, embed_ms = _embedding_wait(question_vector, since=started)

    approved = _approved_answer(bot, question, embedded.vector if embedded else None)
    search = None if approved else _retrieve(bot, question, embedded, embed_ms=embed_ms)
    passages = [_passage(n, chunk) for n, chunk in enumerate(search.chunks if search and search.relevant else [], 1)]
    retrieval_ms = (search.embed_ms + search.search_ms) if search else 0.0
    # Nothing below needs the database until the final save: give the connection back while the model streams.
    connection.close()

    if approved is not None:
        outcome = _approved_outcome(approved, group=group, message_id=message.id, started=started)
        metrics.ANSWERS.labels(bot=bot.slug, outcome="approved_answer").inc()
    elif bot.strict_mode and not passages:
        outcome = AnswerOutcome(text=STRICT_NO_ANSWER, finish_reason="no_relevant_passages")
        metrics.ANSWERS.labels(bot=bot.slug, outcome="no_relevant_passages").inc()
    elif not bot.endpoint:
        outcome = _retrieval_only(search, reason="not_configured")
        metrics.ANSWERS.labels(bot=bot.slug, outcome="retrieval_only").inc()
    else:
        outcome = _generate(
            message_id=message.id,
            bot=bot,
            group=group,
            passages=passages,
            history=history,
            question=question,
            search=search,
            started=started,
            coalesce_interval_s=coalesce_interval_s,
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
        {
            "type": "chat.done",
            "message_id": message.id,
            "status": outcome.status,
            "citations": outcome.citations,
            "text": outcome.text,
        },
    )
    if outcome.error_code:
        relay().group_send(
            group,
            {"type": "chat.error", "code": outcome.error_code, "message": outcome.error_message, "retryable": True},
        )
    if approved is not None:
        approved_answer_use(approved_answer=approved)
    try:
        leads.lead_form_after_answer(conversation=conversation, question=question, outcome=outcome)
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


def _question_embedding_soon(bot: Bot, question: str) -> Future | None:
    if not question.strip():
        return None
    try:
        return get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(question)
    except Exception:
        logger.exception("could not embed the question for bot %s", bot.slug)
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
    relay().group_send(group, {"type": "chat.token", "message_id": message_id, "text": approved.answer})
    return AnswerOutcome(
        text=approved.answer,
        finish_reason="approved_answer",
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


def _passage(n: int, chunk: RetrievedChunk) -> Passage:
    return Passage(n=n, title=chunk.title, url=chunk.url, text=chunk.text, heading_path=" › ".join(chunk.heading_path))


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


def _citations(passages: list[Passage]) -> list[Citation]:
    return [Citation(n=passage.n, title=passage.title, url=passage.url) for passage in passages]


def _retrieval_only(search: SearchResult | None, *, reason: str) -> AnswerOutcome:
    """An answer made of the most relevant passages, for when the model cannot be used."""
    chunks = search.chunks[:3] if search and search.relevant else []
    if not chunks:
        return AnswerOutcome(
            text=MODEL_DOWN_NO_PASSAGES,
            status=Message.Status.RETRIEVAL_ONLY,
            finish_reason=reason,
        )
    lines = [MODEL_DOWN_WITH_PASSAGES, ""]
    for n, chunk in enumerate(chunks, start=1):
        where = " › ".join([chunk.title, *chunk.heading_path[-1:]]) if chunk.heading_path else chunk.title
        excerpt = " ".join(chunk.text.split())
        excerpt = excerpt if len(excerpt) <= 300 else excerpt[:297].rsplit(" ", 1)[0] + "…"
        lines.append(f"{n}. **{where}**: {excerpt} [{n}]")
    passages = [_passage(n, chunk) for n, chunk in enumerate(chunks, start=1)]
    return AnswerOutcome(
        text="\n".join(lines),
        status=Message.Status.RETRIEVAL_ONLY,
        citations=_citations(passages),
        finish_reason=reason,
    )


def _build(bot: Bot, *, passages, history, question, info) -> BuiltPrompt:
    """Count with the conservative estimate first: when everything fits by the over-estimate it fits for real,
    and no /tokenize round trip delays the first token. Only when something had to be left out are exact counts
    from the model server worth their cost."""
    arguments = dict(
        persona=bot.persona,
        passages=passages,
        history=history,
        question=question,
        model_info=info,
        max_new_tokens=bot.max_new_tokens,
    )
    built = build_prompt(count_tokens=estimate_tokens, **arguments)
    if len(built.passages_used) < len(passages) or len(built.history_used) < len(history) or built.question_truncated:
        api_key = settings.TGI_API_KEY or None
        built = build_prompt(count_tokens=lambda text: count_tokens(bot.endpoint, text, api_key=api_key), **arguments)
    return built


class _StopRequests:
    """Stop requests for the answers this process is streaming. One thread reads them all from Redis in one round
    trip every STOP_CHECK_INTERVAL_S; an answer's `should_stop` (polled by the model client every 10 ms and at
    every token) only reads a flag. Fifty answers asking Redis for themselves cost a worker fifty times as many
    round trips, and the GIL time that goes with them."""

    def __init__(self) -> None:
        self._requested: dict[int, bool] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, message_id: int) -> None:
        with self._changed:
            self._requested[message_id] = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="answer-stop-requests", daemon=True)
                self._thread.start()
            self._changed.notify()
        self._check([message_id])  # a stop that came while the task was queued counts at once

    def forget(self, message_id: int) -> None:
        with self._changed:
            self._requested.pop(message_id, None)

    def requested(self, message_id: int) -> bool:
        return self._requested.get(message_id, False)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._requested:
                    self._changed.wait()
                pending = [message_id for message_id, stop in self._requested.items() if not stop]
            if pending:
                self._check(pending)
            time.sleep(STOP_CHECK_INTERVAL_S)

    def _check(self, message_ids: list[int]) -> None:
        try:
            # redis_keys has no batch read; its key format is the one thing this reaches into.
            found = redis_keys.sync_client().mget([redis_keys._stop_key(message_id) for message_id in message_ids])
        except redis.RedisError as error:
            # Not being able to stop is better than losing the answer.
            logger.warning("could not check for stop requests: %s", error)
            return
        with self._changed:
            for message_id, value in zip(message_ids, found, strict=True):
                if value is not None and message_id in self._requested:
                    self._requested[message_id] = True


_stop_requests = _StopRequests()


def _generate(
    *,
    message_id: int,
    bot: Bot,
    group: str,
    passages: list[Passage],
    history: list[Turn],
    question: str,
    search: SearchResult | None,
    started: float,
    coalesce_interval_s: float,
) -> AnswerOutcome:
    generation = GenerationSettings(
        endpoint=bot.endpoint,
        adapter_id=bot.adapter_id or None,
        temperature=bot.temperature,
        top_p=bot.top_p,
        max_new_tokens=bot.max_new_tokens,
        stop=tuple(bot.stop_sequences[:4]),
        seed=bot.seed,
        api_key=settings.TGI_API_KEY or None,
        timeout_s=settings.TGI_TIMEOUT_S,
    )
    coalescer = TokenCoalescer(group=group, message_id=message_id, interval_s=coalesce_interval_s)
    parts: list[str] = []
    outcome = AnswerOutcome()
    passages_used = passages
    _stop_requests.watch(message_id)
    progress = watchdog.answer_progress(message_id)
    # What the visitor sees of the model's text: links only to the sources and the bot's sites, no prompt leak.
    allowed = [passage.url for passage in passages] + list(bot.allowed_origins) + [settings.SITE_URL]
    guard = output_guard.StreamGuard(allowed_hosts=output_guard.allowed_hosts_from(allowed))

    def should_stop() -> bool:
        return _stop_requests.requested(message_id)

    try:
        if not circuit.circuit_allows(endpoint=bot.endpoint):
            raise ModelServerError("circuit_open", "the model server failed repeatedly; not asking it for a while")
        info = model_info(
            bot.endpoint,
            api_key=generation.api_key,
            timeout_s=min(generation.timeout_s, 5.0),
            retries=generation.connect_retries,
            backoff_s=generation.backoff_s,
            should_stop=should_stop,
        )
        built = _build(bot, passages=passages, history=history, question=question, info=info)
        outcome.prompt = built.messages
        guard.protect(built.messages[0]["content"])
        outcome.model = info.model_id
        passages_used = built.passages_used
        metrics.ADDED_SECONDS.labels(bot=bot.slug).observe(time.monotonic() - started)
        end: StreamEnd | None = None
        for event in stream_chat(generation, built.messages, should_stop=should_stop):
            if isinstance(event, StreamDelta):
                if not parts:
                    outcome.ttft_ms = (time.monotonic() - started) * 1000
                    metrics.TTFT_SECONDS.labels(bot=bot.slug).observe(outcome.ttft_ms / 1000)
                parts.append(event.text)
                safe = guard.feed(event.text)
                coalescer.feed(safe)
                progress.add(safe)
                if guard.prompt_leaked:
                    logger.warning("answer %s repeated the system prompt: ended with a safe message", message_id)
                    break
            else:
                end = event
        coalescer.feed(guard.flush())
        coalescer.close()
        circuit.circuit_record_success(endpoint=bot.endpoint)
        guarded = guard.final()
        outcome.text = guarded.text
        outcome.finish_reason = end.finish_reason or "" if end else ""
        if guarded.prompt_leaked:
            outcome.finish_reason = "prompt_leak"
        outcome.model = (end.model if end and end.model and end.model != "tgi" else None) or outcome.model
        outcome.prompt_tokens = end.prompt_tokens if end and end.prompt_tokens is not None else built.prompt_tokens
        outcome.completion_tokens = end.completion_tokens if end else None
        outcome.status = Message.Status.STOPPED if outcome.finish_reason == "stopped" else Message.Status.COMPLETE
        outcome.citations = _citations(extract_citations(outcome.text, passages_used))
        metrics.ANSWERS.labels(bot=bot.slug, outcome=outcome.status).inc()
    except (ModelServerError, PromptBudgetError) as error:
        coalescer.feed(guard.flush())
        coalescer.close()
        kind = error.kind if isinstance(error, ModelServerError) else "prompt_too_long"
        if kind in circuit.FAILURE_KINDS:
            circuit.circuit_record_failure(endpoint=bot.endpoint)
        metrics.TGI_ERRORS.labels(kind=kind).inc()
        if _stop_requests.requested(message_id) and not parts:
            outcome.status, outcome.finish_reason = Message.Status.STOPPED, "stopped"
            metrics.ANSWERS.labels(bot=bot.slug, outcome="stopped").inc()
        elif not parts:
            logger.error("model server unavailable for bot %s (%s): answering with passages only", bot.slug, error)
            fallback = _retrieval_only(search, reason=kind)
            fallback.prompt, fallback.model = outcome.prompt, outcome.model
            outcome = fallback
            metrics.ANSWERS.labels(bot=bot.slug, outcome="retrieval_only").inc()
        else:
            logger.error("model stream failed mid-answer for bot %s (%s)", bot.slug, error)
            outcome.text = guard.final().text
            outcome.status = Message.Status.ERROR
            outcome.finish_reason = kind
            outcome.error_code = "answer_failed"
            outcome.error_message = "The answer was cut off by a problem on our side. Please try again."
            outcome.citations = _citations(extract_citations(outcome.text, passages_used))
            metrics.ANSWERS.labels(bot=bot.slug, outcome="error").inc()
    finally:
        _stop_requests.forget(message_id)
    if outcome.completion_tokens:
        metrics.TOKENS.labels(bot=bot.slug, direction="out").inc(outcome.completion_tokens)
    if outcome.prompt_tokens:
        metrics.TOKENS.labels(bot=bot.slug, direction="in").inc(outcome.prompt_tokens)
    return outcome
