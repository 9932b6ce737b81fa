"""The worker's CPU per streamed token: one process answers `--answers` questions at once, each answer `--tokens`
tokens long, against the bench stack's database, Redis and model-server simulator (50 tokens/s per answer, as
bench.run), with the code the worker runs (`chatbot.answers.pipeline.answer_generate`) on threads as Celery's.

    .venv/bin/python -m bench.stream_cpu [--answers 50] [--tokens 200] [--text words|cited] [--rounds 3]

Each round answers the questions twice, once with one-token answers and once with `--tokens`; the difference in
this process's CPU (every thread: reading the model's stream, the output guard, the coalescers, the relay to
Redis, the progress checkpoints, the stop checks), divided by the extra tokens, is the CPU per streamed token.
The question's embedding, retrieval and saving cancel out. `--text cited` streams sentences with citations, a
link and a code span, as model answers have; `words` streams "w0 w1 ..." as bench.run does. The garbage collector
is frozen after a warm-up round, as in the worker (chatbot/ops/gc_pauses.py).
"""

import argparse
import gc
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import lib
from bench.answer_statements import question_save
from bench.embedding_backends import forward_pass_ms

CITED = (
    "Refunds take five business days [1]. See [the refund policy](https://bench.example.com/refunds) or run "
    "`orders refund` from the console [2]. Items must be unused, in their original packaging [1]. "
)


def cited_answer_set(stack: lib.Stack, tokens: int) -> None:
    """Have the simulator answer with the first `tokens` tokens of `CITED` repeated (`Stack.set_answer_tokens`
    sets bench.run's "w0 w1 ...")."""
    from devtools.tgi_simulator import simulated_tokens

    script = "".join(piece for piece, _, _ in simulated_tokens(CITED * (tokens // 20 + 1))[:tokens])
    lib.simulator_call(stack.simulator_url, "/_simulator/config", {"script_text": script})


def stream_cpu(stack: lib.Stack, *, answers: int, tokens: int, text: str, rounds: int) -> dict:
    from django.conf import settings
    from django.db import close_old_connections

    from chatbot.answers import pipeline
    from chatbot.chat.conversations import conversation_start
    from chatbot.models import Bot

    settings.TGI_URL = stack.simulator_url
    bot = Bot.objects.get(slug="bench")

    def answer_one(n: int) -> None:
        try:
            conversation = conversation_start(bot=bot, visitor_id=uuid.uuid4().hex)
            question = f"How do refunds work for order type {n}?"
            answer = question_save(conversation, question)
            pipeline.answer_generate(message_id=answer.id, question_hint=question)
        finally:
            close_old_connections()

    def round_cpu_s(answer_tokens: int) -> float:
        if text == "words":
            stack.set_answer_tokens(answer_tokens)
        else:
            cited_answer_set(stack, answer_tokens)
        started = time.process_time()
        list(pool.map(answer_one, range(answers)))
        return time.process_time() - started

    with ThreadPoolExecutor(answers) as pool:
        round_cpu_s(1)
        round_cpu_s(5)
        gc.collect()
        gc.freeze()
        per_token_us = []
        for _ in range(rounds):
            short = round_cpu_s(1)
            long = round_cpu_s(tokens)
            per_token_us.append(round((long - short) * 1e6 / (answers * (tokens - 1)), 1))
    return {
        "answers_at_once": answers,
        "tokens": tokens,
        "text": text,
        "cpu_us_per_token": {"median": statistics.median(per_token_us), "rounds": per_token_us},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--text", choices=["words", "cited"], default="cited")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-stream-cpu-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            stack.start(chunks=1_000, worker_concurrency=8, answer_tokens=1)
            result = stream_cpu(stack, answers=args.answers, tokens=args.tokens, text=args.text, rounds=args.rounds)
            result["raw_forward_pass_ms"] = round(forward_pass_ms(), 2)
            print(json.dumps(result, indent=2))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
