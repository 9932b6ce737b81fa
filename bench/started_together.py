"""What the machine sustains when many answers start together: the rounds of bench.run's `relay_tokens_per_s_30ms`
(100-token answers, all asked at once, counted from the round's first frame to its last), taken past the sizes
bench.run measures, beside the questions a second the same processes prepare and the model that relates the two.

    .venv/bin/python -m bench.started_together [--answers 100 200 400 800] [--workers 1] [--daphnes 1] [--json F]
                                               [--tokens 100] [--timeline]

The bench stack (10,000 chunks, the TGI simulator at 50 tokens/s), `--daphnes` Daphne and `--workers` worker
processes with threads for every answer of the largest round, as bench.run's scaling cells. First three bursts of
100 first questions with 8-token answers (the cells' questions/s, q, the median burst), then one round per
`--answers` value. The rounds ask the first n visitors of one pool, as bench.run's steps do: a round's visitors who
asked in an earlier round ask a follow-up, the others a first question. For each round it prints the tokens a second
(the round's first frame to its last), the token lag p50 / p95 (and p95 once every answer was streaming), the time
to first token p50, the whole answers a second (the round's answers over its wall time), the model's 100·n/(n/q+2)
(bench.run's `started_together_bound`: preparation at q a second, 2 s of streaming per answer, neither slowing the
other), and the cores each process used over the round, with the CPU per answer of Parley's processes (Daphne,
workers, PostgreSQL, Redis) and of all of them (the simulator and this load generator too: they share the cores).
`--tokens` makes the answers longer (the model's figures assume 100); `--timeline` also prints each round's token lag
p95 for every half second since its first question, where a stall of the relay shows as a burst (the watchdog's
look-ups every 5 s, docs/scaling-rounds.md, the round of 2026-12-05 late evening:
`--answers 125 125 125 125 --tokens 500 --timeline`).
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench import lib
from bench.run import (
    PARLEY_PROCESSES,
    STARTED_TOGETHER_TOKENS,
    TTFT_ANSWER_TOKENS,
    connect,
    first_question_burst,
    measured_round,
    raw_forward_pass_ms,
    started_together_tokens_per_s,
    worker_threads,
)

BURSTS = 3
BURST_QUESTIONS = 100


async def questions_per_s(stack: lib.Stack) -> list[float]:
    """BURSTS bursts of BURST_QUESTIONS first questions with short answers, each from its first question to its
    last `done`, every burst from visitors of its own (as bench.run's scaling cells)."""
    stack.set_answer_tokens(TTFT_ANSWER_TOKENS)
    rates = []
    for burst in range(BURSTS):
        visitors: list[lib.Visitor] = []
        await connect(stack.ws_urls, visitors, BURST_QUESTIONS)
        _, rate = await first_question_burst(visitors, label=f"stb{burst}")
        rates.append(rate)
        await asyncio.gather(*(visitor.close() for visitor in visitors))
    return rates


def round_line(result: dict, asking: int, q: float) -> dict:
    parley = result["parley"]
    processes = {name: summary["cpu_share"] for name, summary in result["processes"].items()}
    parley_cores = sum(share for name, share in processes.items() if name.startswith(PARLEY_PROCESSES))
    all_cores = sum(processes.values())
    wall = result["whole_round"]["wall_s"]
    answers_per_s = (asking - parley["errors"]) / wall if wall else None
    return {
        "answers_at_once": asking,
        "tokens_per_s": parley["tokens_per_s"],
        "modelled_tokens_per_s": round(started_together_tokens_per_s(asking, q)),
        "token_lag_ms": {key: parley["token_lag_ms"].get(key) for key in ("p50", "p95")},
        "token_lag_p95_once_streaming": parley["token_lag_ms_once_streaming"].get("p95"),
        "ttft_p50_ms": parley["ttft_ms"].get("p50"),
        "answers_per_s": answers_per_s and round(answers_per_s, 1),
        "errors": parley["errors"],
        "tokens_lost": parley["tokens_lost"],
        "wall_s": wall,
        "cores": processes,
        "cores_parley": round(parley_cores, 2),
        "cores_all": round(all_cores, 2),
        "cpu_ms_per_answer_parley": answers_per_s and round(parley_cores * 1000 / answers_per_s, 1),
        "cpu_ms_per_answer_all": answers_per_s and round(all_cores * 1000 / answers_per_s, 1),
    }


async def rounds(
    stack: lib.Stack, answer_counts: list[int], *, tokens: int = STARTED_TOGETHER_TOKENS, timeline: bool = False
) -> dict:
    visitors: list[lib.Visitor] = []
    await connect(stack.ws_urls, visitors, max(answer_counts))
    stack.set_answer_tokens(TTFT_ANSWER_TOKENS)
    for n, visitor in enumerate(visitors[: 2 * len(stack.workers)]):  # warm-up: every worker loads its model
        await visitor.ask(f"Warm up {n} [ref stw{n}]", timeout_s=120)
    rates = await questions_per_s(stack)
    q = statistics.median(rates)
    print(f"questions/s (bursts of {BURST_QUESTIONS} first questions, 8-token answers): {q}"
          f" ({' / '.join(map(str, rates))})", flush=True)  # fmt: skip
    stack.set_answer_tokens(tokens)
    lines = []
    for asking in answer_counts:
        result = await measured_round(stack, visitors, asking, label=f"st{asking}", with_floor=False)
        line = round_line(result, asking, q)
        print(
            f"{asking} answers started together: {line['tokens_per_s']} tokens/s (model"
            f" {line['modelled_tokens_per_s']}), lag p50 / p95 {line['token_lag_ms']['p50']} /"
            f" {line['token_lag_ms']['p95']} ms (p95 once all stream {line['token_lag_p95_once_streaming']}), TTFT"
            f" p50 {line['ttft_p50_ms']} ms, {line['answers_per_s']} answers/s, errors {line['errors']}, cores"
            f" {line['cores_parley']} Parley / {line['cores_all']} all {line['cores']}, CPU per answer"
            f" {line['cpu_ms_per_answer_parley']} / {line['cpu_ms_per_answer_all']} ms",
            flush=True,
        )
        if timeline:
            line["token_lag_p95_by_half_second"] = result["parley"]["_lag_timeline"]
            print(f"  token lag p95 by half second since the first question: {line['token_lag_p95_by_half_second']}",
                  flush=True)  # fmt: skip
        lines.append(line)
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    return {"questions_per_s": q, "questions_per_s_bursts": rates, "rounds": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, nargs="+", default=[100, 200, 400, 800], help="answers per round")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--daphnes", type=int, default=1, help="Daphne processes")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tokens", type=int, default=STARTED_TOGETHER_TOKENS, help="tokens per answer")
    parser.add_argument("--timeline", action="store_true", help="each round's token lag p95 by half second")
    args = parser.parse_args()
    forward_pass = raw_forward_pass_ms()
    print(f"raw embedding forward pass (one 16-token question, one thread): {forward_pass}", flush=True)
    with tempfile.TemporaryDirectory(prefix="parley-started-together-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            stack.start(chunks=10_000, worker_concurrency=8, answer_tokens=TTFT_ANSWER_TOKENS)
            # As bench.run's scaling cells: threads for every answer at once, spread over the worker processes.
            concurrency = worker_threads(max(BURST_QUESTIONS, *args.answers), args.workers)
            stack.processes_start(workers=args.workers, daphnes=args.daphnes, worker_concurrency=concurrency)
            results = asyncio.run(rounds(stack, args.answers, tokens=args.tokens, timeline=args.timeline))
        finally:
            stack.stop()
    if args.json:
        found = {"command": " ".join(sys.argv), "raw_forward_pass_ms": forward_pass, "workers": args.workers,
                 "daphnes": args.daphnes, **results}  # fmt: skip
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
