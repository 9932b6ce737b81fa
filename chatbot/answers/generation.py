"""Asking the model: the prompt within the model's budget, the stream relayed to the conversation as it arrives
(guarded), stop requests, the circuit breaker, and what to do when the model server fails."""

import logging
import time

import redis
from django.conf import settings

from chatbot.answers import guard as output_guard
from chatbot.answers.fallback import extractive_answer, extractive_outcome
from chatbot.answers.outcome import AnswerOutcome, citations_of
from chatbot.answers.progress import answer_progress
from chatbot.answers.stops import stop_requested_queue, stop_requests
from chatbot.answers.texts import answer_text
from chatbot.models import Bot, Message
from chatbot.ops import circuit, metrics
from chatbot.realtime.connections import sync_client
from chatbot.realtime.relay import TokenCoalescer
from inference.budget import BuiltPrompt, PromptBudgetError, build_prompt
from inference.client import (
    GenerationSettings,
    ModelServerError,
    count_tokens,
    estimate_tokens,
    model_info,
    stream_chat_to,
)
from inference.prompts import Passage, Turn, extract_citations
from knowledge.retrieval import RetrievedChunk

logger = logging.getLogger(__name__)

MID_ANSWER_FAILURE = answer_text("answer_cut_off")  # in English; the visitor gets theirs


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
        api_key = bot.endpoint_api_key
        built = build_prompt(count_tokens=lambda text: count_tokens(bot.endpoint, text, api_key=api_key), **arguments)
    return built


def generation_settings(bot: Bot) -> GenerationSettings:
    """How to reach and sample the bot's model: its endpoint, adapter and key. The one place that says so (the
    insights job asks the same model: chatbot.insights)."""
    return GenerationSettings(
        endpoint=bot.endpoint,
        adapter_id=bot.adapter_id or None,
        model=settings.MODEL_NAME,
        temperature=bot.temperature,
        top_p=bot.top_p,
        max_new_tokens=bot.max_new_tokens,
        stop=tuple(bot.stop_sequences[:4]),
        seed=bot.seed,
        # TGI_API_KEY only ever goes to TGI_URL; another endpoint gets the bot's own key (Bot.endpoint_api_key).
        api_key=bot.endpoint_api_key,
        timeout_s=settings.TGI_TIMEOUT_S,
    )


def answer_with_model(
    *,
    message_id: int,
    bot: Bot,
    group: str,
    passages: list[Passage],
    history: list[Turn],
    question: str,
    chunks: list[RetrievedChunk],
    question_vector: list[float] | None,
    started: float,
    coalesce_interval_s: float,
    language: str = "en",
) -> AnswerOutcome:
    """Ask the bot's model and relay its answer as it comes; `language` is the visitor's, for what Parley says
    itself when the model fails. `passages` are `chunks` as the prompt shows them: when the model fails, the
    visitor gets an extractive answer from them (chatbot.answers.fallback)."""
    generation = generation_settings(bot)
    coalescer = TokenCoalescer(group=group, message_id=message_id, interval_s=coalesce_interval_s)
    parts: list[str] = []
    outcome = AnswerOutcome()
    passages_used = passages
    stop_requests.watch(message_id)
    admission = _answer_start_checks(message_id=message_id, endpoint=bot.endpoint)
    progress = answer_progress(message_id)
    # What the visitor sees of the model's text: links only to the sources and the bot's sites, no prompt leak.
    allowed = [passage.url for passage in passages] + list(bot.allowed_origins) + [settings.SITE_URL]
    guard = output_guard.StreamGuard(allowed_hosts=output_guard.allowed_hosts_from(allowed))

    def should_stop() -> bool:
        return stop_requests.requested(message_id)

    try:
        if not admission.allowed:
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
        outcome.passages_over_budget = _left_out(passages, built.passages_used)
        metrics.ADDED_SECONDS.labels(bot=bot.slug).observe(time.monotonic() - started)

        def relay_piece(text: str) -> bool:
            """On the process's model-stream reader thread: guard and relay one piece; True ends the answer."""
            if not parts:
                outcome.ttft_ms = (time.monotonic() - started) * 1000
                metrics.TTFT_SECONDS.labels(bot=bot.slug).observe(outcome.ttft_ms / 1000)
            parts.append(text)
            safe = guard.feed(text)
            coalescer.feed(safe)
            progress.add(safe)
            if guard.prompt_leaked:
                logger.warning("answer %s repeated the system prompt: ended with a safe message", message_id)
                return True
            return False

        end = stream_chat_to(generation, built.messages, relay_piece, should_stop=should_stop)
        coalescer.feed(guard.flush())
        coalescer.close()
        circuit.circuit_record_success(endpoint=bot.endpoint, admission=admission)
        guarded = guard.final()
        outcome.text = guarded.text
        outcome.finish_reason = end.finish_reason or "" if end else ""
        if guarded.prompt_leaked:
            outcome.finish_reason = "prompt_leak"
        outcome.model = (end.model if end and end.model and end.model != "tgi" else None) or outcome.model
        outcome.prompt_tokens = end.prompt_tokens if end and end.prompt_tokens is not None else built.prompt_tokens
        outcome.completion_tokens = end.completion_tokens if end else None
        outcome.status = Message.Status.STOPPED if outcome.finish_reason == "stopped" else Message.Status.COMPLETE
        outcome.citations = citations_of(extract_citations(outcome.text, passages_used))
        metrics.ANSWERS.labels(bot=bot.slug, outcome=outcome.status).inc()
    except (ModelServerError, PromptBudgetError) as error:
        coalescer.feed(guard.flush())
        coalescer.close()
        kind = error.kind if isinstance(error, ModelServerError) else "prompt_too_long"
        if kind in circuit.FAILURE_KINDS:
            circuit.circuit_record_failure(endpoint=bot.endpoint)
        metrics.TGI_ERRORS.labels(kind=kind).inc()
        if stop_requests.requested(message_id) and not parts:
            outcome.status, outcome.finish_reason = Message.Status.STOPPED, "stopped"
            metrics.ANSWERS.labels(bot=bot.slug, outcome="stopped").inc()
        elif not parts:
            logger.error("model server unavailable for bot %s (%s): answering from the passages", bot.slug, error)
            fallback = extractive_outcome(
                question=question,
                question_vector=question_vector,
                chunks=chunks,
                reason=kind,
                model_failed=True,
                language=language,
            )
            fallback.prompt, fallback.model = outcome.prompt, outcome.model
            fallback.passages_over_budget = outcome.passages_over_budget
            outcome = fallback
            metrics.ANSWERS.labels(bot=bot.slug, outcome="retrieval_only").inc()
        else:
            logger.error("model stream failed mid-answer for bot %s (%s)", bot.slug, error)
            outcome.text = guard.final().text
            outcome.status = Message.Status.ERROR
            outcome.finish_reason = kind
            outcome.error_code = "answer_failed"
            outcome.error_message = answer_text("answer_cut_off", language)
            outcome.citations = citations_of(extract_citations(outcome.text, passages_used))
            # What was said stays; what the documentation says follows it, numbered after the prompt's passages.
            extracted, citations = extractive_answer(
                question=question,
                question_vector=question_vector,
                chunks=chunks,
                language=language,
                first_number=len(passages_used) + 1,
            )
            if extracted:
                outcome.text = f"{outcome.text.rstrip()}\n\n{extracted}"
                outcome.citations += citations
            metrics.ANSWERS.labels(bot=bot.slug, outcome="error").inc()
    finally:
        stop_requests.forget(message_id)
        coalescer.release()
    if outcome.completion_tokens:
        metrics.TOKENS.labels(bot=bot.slug, direction="out").inc(outcome.completion_tokens)
    if outcome.prompt_tokens:
        metrics.TOKENS.labels(bot=bot.slug, direction="in").inc(outcome.prompt_tokens)
    return outcome


def _answer_start_checks(*, message_id: int, endpoint: str) -> circuit.CircuitAdmission:
    """Before the model request, in one Redis round trip: did the visitor ask to stop while the task was queued
    (`stop_requests`, watching already, hears the later requests), and may the answer ask the model server (the
    circuit breaker)? When Redis cannot tell, the answer goes on, as each check alone would have it."""
    try:
        pipe = sync_client().pipeline(transaction=False)
        stop_requested_queue(pipe, message_id=message_id)
        circuit.circuit_admission_queue(pipe, endpoint=endpoint)
        stop_found, admission = pipe.execute()
    except redis.RedisError as error:
        logger.warning("could not check for a stop request or the model server's circuit: %s", error)
        return circuit.ADMITTED_WITHOUT_REDIS
    if stop_found:
        stop_requests.heard_before(message_id)
    return circuit.circuit_admission_read(admission)


def _left_out(offered: list[Passage], used: list[Passage]) -> list[int]:
    """The numbers of the `offered` passages the prompt left out (`used` keeps their order, renumbered)."""
    left_out, remaining = [], list(used)
    for passage in offered:
        if remaining and (remaining[0].title, remaining[0].url, remaining[0].text) == (
            passage.title,
            passage.url,
            passage.text,
        ):
            remaining.pop(0)
        else:
            left_out.append(passage.n)
    return left_out
