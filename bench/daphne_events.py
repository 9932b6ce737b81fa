"""Daphne's CPU per token event it relays to a visitor's socket, and the lag from the worker's publish to the
visitor, with nothing else on the path: no question, no model, no worker.

    .venv/bin/python -m bench.daphne_events [--sockets 50] [--rate 50] [--seconds 6] [--rounds 3]

The bench stack's Daphne (one process, as production runs it) holds `--sockets` chat sockets, each in its own
conversation. A publisher process sends `chat.token` events to every conversation's group, `--rate` a second each,
through the worker's own publisher (`GroupPublisher`, one pipelined round trip per 2 ms tick, the groups' phases
spread over the interval as answers' tokens are). Each event's text carries its publish time; this process reads
the frames and takes the lag. Prints, per round, the CPU µs per event of Daphne, Redis, the publisher and this
load generator, and the lag p50 / p95 / max (ms).
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import lib

TICK_S = 0.002
PUBLISHER_START_S = 4.0


def publish(groups: list[str], *, rate: float, seconds: float, start_at: float) -> None:
    """From `start_at` (monotonic), send `rate` token events a second to each group for `seconds`, the groups'
    phases spread over 1 / rate."""
    import django

    django.setup()
    from channels.layers import get_channel_layer

    from chatbot.realtime.protocol import token_event

    publisher = get_channel_layer().publisher(socket_timeout_s=5)
    publisher.group_send_many([(groups[0], token_event(message_id=0, text=" warm-up"))])  # connected, imported
    time.sleep(max(0.0, start_at - time.monotonic()))
    interval = 1 / rate
    started = time.monotonic()
    due = [started + interval * n / len(groups) for n in range(len(groups))]
    while time.monotonic() - started < seconds:
        now = time.monotonic()
        batch = []
        for n, group in enumerate(groups):
            if due[n] <= now:
                batch.append((group, token_event(message_id=1, text=f" t{time.monotonic():.6f}")))
                due[n] += interval
        if batch:
            publisher.group_send_many(batch)
        time.sleep(max(0.0, TICK_S - (time.monotonic() - now)))


async def read_tokens(visitor: lib.Visitor, lags_ms: list[float], *, window: tuple[float, float], until: float
                      ) -> int:  # fmt: skip
    """Read the socket's frames until `until`; the lag of each event published within `window` (monotonic)."""
    counted = 0

    def on_frame(at: float, frame: dict | None) -> None:
        nonlocal counted
        if frame is not None and frame["type"] == "token" and frame["text"].startswith(" t"):
            published_at = float(frame["text"][2:])
            if window[0] <= published_at < window[1]:
                lags_ms.append((at - published_at) * 1000)
                counted += 1

    visitor.socket.on_frame = on_frame
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    visitor.socket.on_frame = lib.ignored
    return counted


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def cpu_in_window(pids: dict[str, int], window: tuple[float, float]) -> dict[str, float]:
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    return {name: cpu_s(pid) - before[name] for name, pid in pids.items()}


async def one_round(stack: lib.Stack, visitors: list[lib.Visitor], groups: list[str], *, rate: float,
                    seconds: float) -> dict:  # fmt: skip
    start_at = time.monotonic() + PUBLISHER_START_S
    publisher = subprocess.Popen(
        [sys.executable, "-m", "bench.daphne_events", "--publish", "--rate", str(rate), "--seconds", str(seconds),
         "--start-at", str(start_at), "--groups", *groups],
        cwd=lib.BASE_DIR, env={**os.environ, **stack.production},
    )  # fmt: skip
    pids = {"daphne": stack.daphne.pid, "redis": stack.service_pids()["redis"], "publisher": publisher.pid,
            "load_generator": os.getpid()}  # fmt: skip
    # The half seconds at either end are left out: the publisher's first sends, and the last events on their way.
    window = (start_at + 0.5, start_at + seconds - 0.5)
    lags_ms: list[float] = []
    cpu, *counts = await asyncio.gather(
        cpu_in_window(pids, window),
        *(read_tokens(visitor, lags_ms, window=window, until=start_at + seconds + 0.5) for visitor in visitors),
    )
    publisher.wait()
    events = sum(counts)
    return {
        "events": events,
        "events_per_s": round(events / (window[1] - window[0]), 1),
        "cpu_us_per_event": {name: round(cpu[name] * 1e6 / events, 1) for name in pids},
        "lag_ms": {
            "p50": round(lib.percentile(lags_ms, 0.5), 2),
            "p95": round(lib.percentile(lags_ms, 0.95), 2),
            "max": round(max(lags_ms), 2),
        },
    }


async def bench(stack: lib.Stack, *, sockets: int, rate: float, seconds: float, rounds: int) -> dict:
    from chatbot.models import Conversation

    visitors = [lib.Visitor(stack.ws_url, n) for n in range(sockets)]
    for visitor in visitors:
        await visitor.connect()
    conversations = await asyncio.to_thread(
        lambda: list(Conversation.objects.filter(bot__public_id=stack.bot_public_id).order_by("id"))
    )
    groups = [conversation.group_name for conversation in conversations]
    results = []
    for n in range(rounds + 1):
        result = await one_round(stack, visitors, groups, rate=rate, seconds=seconds)
        if n:  # the first round warms up
            results.append(result)
            print(json.dumps(result), flush=True)
    for visitor in visitors:
        await visitor.close()
    daphne = [result["cpu_us_per_event"]["daphne"] for result in results]
    return {
        "sockets": sockets,
        "events_per_s_offered": sockets * rate,
        "daphne_cpu_us_per_event_median": statistics.median(daphne),
        "daphne_cpu_us_per_event": daphne,
        "lag_p95_ms": [result["lag_ms"]["p95"] for result in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0, help="events a second to each socket")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--groups", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publish(args.groups, rate=args.rate, seconds=args.seconds, start_at=args.start_at)
        return
    with tempfile.TemporaryDirectory(prefix="parley-daphne-events-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            stack.start(chunks=100, worker_concurrency=4, answer_tokens=1)
            result = asyncio.run(
                bench(stack, sockets=args.sockets, rate=args.rate, seconds=args.seconds, rounds=args.rounds)
            )
            print(json.dumps(result, indent=2))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
