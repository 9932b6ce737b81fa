"""Database statements on the answer path: what Daphne runs to save a visitor's message, and what the worker runs
to answer it, for a first question and for a follow-up. Each statement is a round trip, and each costs CPU in the
process that sends it and in PostgreSQL; the count says whether a change added or removed any.

    .venv/bin/python -m bench.answer_statements      # its own stack (10,000 chunks, as bench.run); about a minute

`bench.run` calls `answer_statements(stack)` on its own stack and reports the counts as `answer_path_statements`.
`answer_cpu(stack)` measures this process's CPU to save and to answer a first question, one at a time (in the
JSON as `cpu`, and in bench.run as `answer_path_cpu_ms`).
The answers run in this process against the stack's database, Redis and model-server simulator, with the same
code the worker runs (`chatbot.answers.pipeline.answer_generate`), and `CaptureQueriesContext` counts what they
send. Transaction control (BEGIN, COMMIT, savepoints) is counted: each is a round trip too.
"""

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench import lib

ANSWER_TOKENS = 8  # as scenario 1 of bench.run


def _kinds(queries: list[dict]) -> dict[str, int]:
    """How many statements of each kind: the first word (SELECT, INSERT, UPDATE, BEGIN...)."""
    counts: dict[str, int] = {}
    for query in queries:
        kind = query["sql"].split(None, 1)[0].upper() if query["sql"].strip() else "?"
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def question_save(conversation, text: str):
    """What Daphne's `visitor_message_post` runs for a question, but the answer is not queued (the caller runs
    it): the bot message to answer."""
    from chatbot.chat.conversations import message_receive
    from chatbot.leads.triggers import lead_form_after_visitor_message

    _, answer = message_receive(conversation=conversation, text=text, dispatch_answer=False)
    lead_form_after_visitor_message(conversation=conversation)
    return answer


def answer_statements(stack: lib.Stack) -> dict:
    """Statements of a first question and of a follow-up in a new conversation of the stack's bench bot: saving
    the visitor's message (Daphne's part) and answering it (the worker's part)."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chatbot.answers import pipeline
    from chatbot.chat.conversations import conversation_start
    from chatbot.models import Bot

    settings.TGI_URL = stack.simulator_url
    bot = Bot.objects.get(slug="bench")

    def asked(conversation, text: str) -> dict:
        with CaptureQueriesContext(connection) as saved:
            answer = question_save(conversation, text)
        with CaptureQueriesContext(connection) as answered:
            pipeline.answer_generate(message_id=answer.id, question_hint=text)
        return {
            "save": len(saved.captured_queries),
            "answer": len(answered.captured_queries),
            "total": len(saved.captured_queries) + len(answered.captured_queries),
            "save_by_kind": _kinds(saved.captured_queries),
            "answer_by_kind": _kinds(answered.captured_queries),
        }

    # One warm-up answer first: the first answer of a process reads what later ones find cached (model info).
    asked(conversation_start(bot=bot, visitor_id=uuid.uuid4().hex), "How does shipping work for order type 0?")
    conversation = conversation_start(bot=bot, visitor_id=uuid.uuid4().hex)
    first = asked(conversation, "How does shipping work for order type 1?")
    follow_up = asked(conversation, "And what about returns of it?")
    return {"first_question": first, "follow_up": follow_up}


def answer_cpu(stack: lib.Stack, *, questions: int = 30) -> dict:
    """CPU of this process (every thread: the embedding, the relay, the progress checkpoints) to save a first
    question and to answer it, one question at a time, median and p90 ms over `questions`. Alone, with nothing
    else running in the process, so a change to the path shows here first, with little of the machine's noise;
    Celery's and Daphne's own parts are not in it (`bench/broker_dispatch.py` has the broker's)."""
    from django.conf import settings

    from chatbot.answers import pipeline
    from chatbot.chat.conversations import conversation_start
    from chatbot.models import Bot

    settings.TGI_URL = stack.simulator_url
    stack.set_answer_tokens(ANSWER_TOKENS)
    bot = Bot.objects.get(slug="bench")
    save_ms, answer_ms = [], []
    for n in range(questions + 2):
        conversation = conversation_start(bot=bot, visitor_id=uuid.uuid4().hex)
        question = f"How do refunds work for order type {n}?"
        started = time.process_time()
        answer = question_save(conversation, question)
        saved = time.process_time()
        pipeline.answer_generate(message_id=answer.id, question_hint=question)
        answered = time.process_time()
        if n >= 2:  # the first two warm the caches
            save_ms.append((saved - started) * 1000)
            answer_ms.append((answered - saved) * 1000)
    return {
        "questions": questions,
        "answer_tokens": ANSWER_TOKENS,
        "save_ms": {"p50": round(statistics.median(save_ms), 2), "p90": round(lib.percentile(save_ms, 0.9), 2)},
        "answer_ms": {"p50": round(statistics.median(answer_ms), 2), "p90": round(lib.percentile(answer_ms, 0.9), 2)},
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="parley-statements-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            stack.start(chunks=10_000, worker_concurrency=8, answer_tokens=1)
            print(json.dumps({**answer_statements(stack), "cpu": answer_cpu(stack)}, indent=2))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
