"""Wall time from saving a visitor's question to the model request its answer sends, for two checkouts of Parley
against one stack, in alternating rounds: a change on the path shows here with little of the host's noise, which
moves whole-stack runs by several milliseconds from one run to the next.

    .venv/bin/python -m bench.path_pairs BASE_CHECKOUT NEW_CHECKOUT [--rounds 4] [--questions 40]

Each checkout is a directory with Parley's code (a `git worktree`, say) and a `.venv` (a link to this one's will
do). One stack serves both: embedded PostgreSQL with 10,000 chunks and Redis, and the TGI simulator (20 ms to the
first token), as bench.run starts them; no Daphne, no Celery. In each round each checkout runs in a process of its
own, in turn (the order flips every round): for each of `--questions` new conversations it saves a first question
and answers it, then a follow-up, in one thread as the worker does (`question_save`, then
`chatbot.answers.pipeline.answer_generate`). The time is from just before the save to the simulator receiving the
request (its clock is the same CLOCK_MONOTONIC). Prints each round's medians and, at the end, each checkout's.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

KINDS = {"first": "How do refunds work for order type {n}?", "follow_up": "And what about returns of order type {n}?"}
WARM_UP = 5


def checkout_run(questions: int, prefix: str) -> dict[str, list[float]]:
    """In a checkout's own process: each conversation's first question and follow-up, saved and answered one after
    the other; the milliseconds from each save to its model request, by kind."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    django.setup()
    from django.conf import settings

    from bench import lib
    from bench.answer_statements import question_save
    from chatbot.answers import pipeline
    from chatbot.chat.conversations import conversation_start
    from chatbot.models import Bot

    settings.TGI_URL = os.environ["PATH_PAIRS_SIMULATOR_URL"]
    bot = Bot.objects.get(slug="bench")
    started: dict[str, tuple[str, float]] = {}
    for n in range(-WARM_UP, questions):
        conversation = conversation_start(bot=bot, visitor_id=uuid.uuid4().hex)
        for kind, question in KINDS.items():
            tag = f"{prefix}-{kind}-{n}"
            text = f"{question.format(n=n)} [ref {tag}]"
            at = time.monotonic()
            answer = question_save(conversation, text)
            pipeline.answer_generate(message_id=answer.id, question_hint=text)
            if n >= 0:
                started[tag] = (kind, at)
    requests = lib.simulator_requests_by_tag(settings.TGI_URL)
    found: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for tag, (kind, at) in started.items():
        if tag in requests:
            found[kind].append((requests[tag]["mono_started"] - at) * 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="*", type=Path, metavar="CHECKOUT", help="two checkouts: before, after")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--questions", type=int, default=40, help="conversations per checkout and round")
    parser.add_argument("--run", nargs=2, metavar=("QUESTIONS", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(checkout_run(int(args.run[0]), args.run[1])))
        return
    if len(args.checkouts) != 2:
        parser.error("give two checkouts")

    from bench import lib

    checkouts = [path.resolve() for path in args.checkouts]
    medians: dict[Path, dict[str, list[float]]] = {path: {kind: [] for kind in KINDS} for path in checkouts}
    with tempfile.TemporaryDirectory(prefix="parley-path-pairs-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            stack.start(chunks=10_000, worker_concurrency=2, answer_tokens=1)
            stack.processes_stop()  # the checkouts answer in their own processes
            for number in range(args.rounds):
                for path in checkouts if number % 2 == 0 else list(reversed(checkouts)):
                    lib.simulator_call(stack.simulator_url, "/_simulator/reset", {})
                    stack.set_answer_tokens(1)
                    environment = {
                        **os.environ,
                        "PYTHONPATH": str(path),
                        "PATH_PAIRS_SIMULATOR_URL": stack.simulator_url,
                    }
                    completed = subprocess.run(
                        [str(path / ".venv/bin/python"), __file__, "--run", str(args.questions), f"r{number}"],
                        cwd=path, env=environment, capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    if completed.returncode != 0:
                        sys.exit(f"{path} failed:\n{completed.stderr[-3000:]}")
                    found = json.loads(completed.stdout.strip().splitlines()[-1])
                    line = {kind: round(statistics.median(found[kind]), 2) for kind in KINDS}
                    for kind in KINDS:
                        medians[path][kind].append(line[kind])
                    print(f"round {number + 1}, {path.name}: save to model request p50 {line} ms", flush=True)
        finally:
            stack.stop()
    for path in checkouts:
        print(f"{path.name}: each round's p50, first questions {medians[path]['first']},"
              f" follow-ups {medians[path]['follow_up']} ms")  # fmt: skip


if __name__ == "__main__":
    main()
