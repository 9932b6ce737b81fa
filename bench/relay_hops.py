"""Where a streamed token's lag is spent when many answers start together: in the worker (the model server's send to
the worker's PUBLISH reaching Redis) or after it (Redis, Daphne and the visitor's socket).

    .venv/bin/python -m bench.relay_hops [--answers 50 100 100] [--tokens 100] [--workers 1] [--json out.json]

The bench stack with one Daphne and one worker (as bench.run's relay figure, scenario 6's 1x1; `--workers 2` for
two worker processes sharing the answers), the TGI simulator at 50 tokens/s. For each `--answers` value, that many
visitors ask at once, as in bench.run's started-together steps. A listener process subscribed to every Redis
pub/sub channel stamps each `chat.token` event as Redis delivers it; the simulator stamps each token it sends, and
the load generator each frame it receives (one clock, CLOCK_MONOTONIC, in every process). A token's lag is split at
Redis: worker = Redis delivery of the event that completes the token − simulator send; after = visitor frame − Redis
delivery. The listener is one more process on the same cores, a few percent of a core. Prints one line per round
and, with --json, the figures.
"""

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import lib
from bench.answer_latency import token_lags_ms
from bench.run import ANSWER_TIMEOUT_S, connect, sim_reset

# Runs in a process of its own: stamps every message Redis delivers, and at SIGTERM writes the token events'
# (delivered at, message id, text) as JSON.
LISTENER = """
import json, signal, sys, time
import msgpack, redis
pubsub = redis.Redis.from_url(sys.argv[1]).pubsub()
pubsub.psubscribe("*")
received, stopping = [], []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
while not stopping:
    message = pubsub.get_message(timeout=0.2)
    if message and message["type"] == "pmessage":
        received.append((time.monotonic(), message["data"]))
events = []
for at, data in received:
    try:
        event = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        continue
    if isinstance(event, dict) and event.get("type") == "chat.token":
        events.append((at, event.get("message_id"), event.get("text")))
json.dump(events, open(sys.argv[2], "w"))
"""


def lag_split(
    sent_at: list[float], redis_events: list[tuple[float, str]], frames: list[tuple[float, str]]
) -> list[tuple[float, float]]:
    """(worker ms, after ms) per token of one answer: `sent_at` the simulator's send times, `redis_events` and
    `frames` (when, text) as Redis delivered the answer's token events and as its visitor received them."""
    to_redis, _ = token_lags_ms(redis_events, sent_at)
    to_visitor, _ = token_lags_ms(frames, sent_at)
    return [(worker, total - worker) for worker, total in zip(to_redis, to_visitor, strict=False)]


async def started_together(stack: lib.Stack, visitors: list[lib.Visitor], asking: int, label: str) -> list:
    sim_reset(stack)
    return await asyncio.gather(
        *(visitor.ask(f"How do refunds work for order type {n}? [ref {label}-{n}]", timeout_s=ANSWER_TIMEOUT_S)
          for n, visitor in enumerate(visitors[:asking]))
    )  # fmt: skip


def round_split(stack: lib.Stack, answers: list, events_path: Path) -> dict:
    records = lib.simulator_requests_by_tag(stack.simulator_url)
    by_message: dict[int, list[tuple[float, str]]] = {}
    for at, message_id, text in json.loads(events_path.read_text()):
        by_message.setdefault(message_id, []).append((at, text))
    worker, after, total, missing = [], [], [], 0
    for answer in answers:
        record = records.get(answer.tag)
        if answer.error or not answer.done or not record or not record.get("sent_at"):
            missing += 1
            continue
        for to_redis, then in lag_split(
            record["sent_at"], by_message.get(answer.done["message_id"], []), answer.frames
        ):
            worker.append(to_redis)
            after.append(then)
            total.append(to_redis + then)
    return {
        "answers": len(answers),
        "answers_not_measured": missing,
        "tokens": len(total),
        "token_lag_ms": lib.stats(total),
        "worker_ms": lib.stats(worker),
        "redis_to_visitor_ms": lib.stats(after),
    }


async def rounds(stack: lib.Stack, redis_url: str, answer_counts: list[int], tokens: int, temporary: Path) -> list:
    visitors: list[lib.Visitor] = []
    await connect(stack.ws_urls, visitors, max(answer_counts))
    for n, visitor in enumerate(visitors[:2]):  # warm-up: the worker loads its model
        await visitor.ask(f"Warm up {n} [ref hw{n}]", timeout_s=120)
    stack.set_answer_tokens(tokens)
    results = []
    for number, asking in enumerate(answer_counts):
        events_path = temporary / f"events-{number}.json"
        listener = subprocess.Popen([sys.executable, "-c", LISTENER, redis_url, str(events_path)])
        await asyncio.sleep(1.0)  # subscribed before the first question
        with lib.collector_paused():
            answers = await started_together(stack, visitors, asking, f"rh{number}")
        await asyncio.sleep(0.5)
        listener.send_signal(signal.SIGTERM)
        listener.wait(timeout=30)
        result = {"answers_at_once": asking, **round_split(stack, answers, events_path)}
        print(
            f"{asking} answers at once: token lag p50 / p95 {result['token_lag_ms'].get('p50')} /"
            f" {result['token_lag_ms'].get('p95')} ms; worker {result['worker_ms'].get('p50')} /"
            f" {result['worker_ms'].get('p95')}; Redis to visitor {result['redis_to_visitor_ms'].get('p50')} /"
            f" {result['redis_to_visitor_ms'].get('p95')}",
            flush=True,
        )
        results.append(result)
        await asyncio.sleep(1.0)
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, nargs="+", default=[50, 100, 100], help="answers at once, per round")
    parser.add_argument("--tokens", type=int, default=100, help="tokens per answer")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parley-relay-hops-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            # As bench.run's scaling cells: threads for every answer at once, spread over the processes.
            stack.start(
                chunks=10_000,
                worker_concurrency=math.ceil(max(args.answers) / args.workers) + 4,
                answer_tokens=8,
                workers=args.workers,
            )
            from django.conf import settings

            # The channel layer's Redis (pub/sub ignores the database number).
            results = asyncio.run(rounds(stack, settings.REDIS_URL, args.answers, args.tokens, Path(temporary)))
        finally:
            stack.stop()
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rounds": results}, indent=1))


if __name__ == "__main__":
    main()
