"""CPU per question by process and by library, sampled on the CPUs by the kernel (`perf record -a`), over rounds of
`--asking` questions at once through the whole stack (bench.run's scenario 2: its visitors, its simulator).

bench.run splits a round's CPU by stage with py-spy, which counts a thread as busy while it waits in the run
queue: on two full cores that inflates whatever runs right after a wake-up (a Redis reply, a database row). perf
samples what the CPUs run, in which process and in which library: the interpreter, ONNX Runtime, PostgreSQL,
pgvector, the kernel (system calls, the loopback network, switching threads). With `--tokens 1` (the default) each
answer is one token, so the figures are a question's own work: the socket's receive and save, the queue, the
embedding, the search, the prompt, the model request and the final save. `--tokens 60` adds scenario 2's streaming.

    .venv/bin/python -m bench.cpu_perf [--asking 50] [--rounds 8] [--tokens 1] [--chunks 10000] [--perf-data FILE]

Needs `perf` and the right to sample every CPU (root, or kernel.perf_event_paranoid at 0 or below). About 2
minutes.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import lib
from bench.embedding_backends import forward_pass_ms

SAMPLE_HZ = 499
# perf script's lines with `-F comm,pid,tid,ip,dso`: "python  1824/1870  7f2a... (/path/to/libpython3.11.so.1.0)".
SAMPLE_LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+[0-9a-f]+\s+\((?P<dso>.*)\)\s*$")
LIBRARIES = (
    ("libpython", "Python"),
    ("onnxruntime", "ONNX Runtime"),
    ("vector.so", "pgvector"),
    ("[kernel", "kernel"),
    ("libc.so", "libc"),
    ("/postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
)


def library_of(dso: str) -> str:
    return next((name for pattern, name in LIBRARIES if pattern in dso), "other")


def samples_by_process_and_library(perf_data: Path, roles: dict[int, str]) -> Counter:
    """(process role, library) → samples, from `perf script`; PostgreSQL's backends by their command name."""
    script = subprocess.run(
        ["perf", "script", "-i", str(perf_data), "-F", "comm,pid,tid,ip,dso"],
        capture_output=True,
        text=True,
        check=True,
    )
    counts: Counter = Counter()
    for line in script.stdout.splitlines():
        match = SAMPLE_LINE.match(line)
        if match is None or match["comm"] == "swapper":
            continue
        pid = int(match["pid"])
        role = roles.get(pid) or ("postgres" if match["comm"] == "postgres" else "other")
        counts[role, library_of(match["dso"])] += 1
    return counts


async def rounds_under_perf(stack: lib.Stack, *, asking: int, rounds: int, perf_data: Path) -> list[float | None]:
    from bench.run import connect, measured_round

    visitors: list[lib.Visitor] = []
    await connect(stack.ws_urls, visitors, asking)
    await measured_round(stack, visitors, asking, label="warm", with_floor=False)
    perf = subprocess.Popen(
        ["perf", "record", "-a", "-F", str(SAMPLE_HZ), "-o", str(perf_data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    until_last_first_token = []
    try:
        for n in range(rounds):
            result = await measured_round(stack, visitors, asking, label=f"perf{n}", with_floor=False)
            until_last_first_token.append(result["until_last_first_token"]["cpu_ms_per_question"])
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
        await asyncio.gather(*(visitor.close() for visitor in visitors))
    return until_last_first_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asking", type=int, default=50, help="questions at once in each round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=1, help="tokens in each answer")
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in the bot's knowledge base")
    parser.add_argument("--perf-data", type=Path, default=None, help="keep perf's samples here (for perf report)")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf)")
    with tempfile.TemporaryDirectory(prefix="parley-cpu-perf-") as temporary:
        stack = lib.Stack(Path(temporary))
        perf_data = Path(temporary) / "perf.data"
        try:
            stack.start(chunks=args.chunks, worker_concurrency=args.asking, answer_tokens=args.tokens)
            bench_cpu = asyncio.run(
                rounds_under_perf(stack, asking=args.asking, rounds=args.rounds, perf_data=perf_data)
            )
            roles = {pid: name for name, pid in stack.process_pids().items()}
            roles.update({stack.simulator.pid: "simulator", os.getpid(): "load_generator"})
            redis_pid = stack.service_pids().get("redis")
            if redis_pid:
                roles[redis_pid] = "redis"
            counts = samples_by_process_and_library(perf_data, roles)
            if args.perf_data:
                shutil.copyfile(perf_data, args.perf_data)
        finally:
            stack.stop()
    questions = args.asking * args.rounds
    ms_per_sample = 1000 / SAMPLE_HZ
    by_process: Counter = Counter()
    for (role, _), samples in counts.items():
        by_process[role] += samples
    table = {
        role: {
            "all": round(total * ms_per_sample / questions, 2),
            **{
                library: round(samples * ms_per_sample / questions, 2)
                for (counted_role, library), samples in counts.most_common()
                if counted_role == role and samples * ms_per_sample / questions >= 0.05
            },
        }
        for role, total in by_process.most_common()
    }
    parley = ("daphne", "worker", "postgres", "redis")
    report = {
        "command": " ".join([".venv/bin/python", "-m", "bench.cpu_perf", *sys.argv[1:]]),
        "questions": questions,
        "answer_tokens": args.tokens,
        "raw_forward_pass_ms": round(forward_pass_ms(), 2),
        "cpu_ms_per_question_parley": round(
            sum(samples for (role, _), samples in counts.items() if role.split("#")[0] in parley)
            * ms_per_sample
            / questions,
            2,
        ),
        "cpu_ms_per_question_by_process_and_library": table,
        "bench_run_cpu_ms_per_question_by_round": bench_cpu,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
