"""How much Parley adds on top of the model, at load: the benchmark suite behind `make bench`.

    .venv/bin/python -m bench.run            # everything (about 15 minutes on 2 cores, more with the 1M retrieval)
    .venv/bin/python -m bench.run --quick    # scenario 1, 50 visitors all asking, and scenario 6; about 6 minutes

Starts the whole stack in a temporary data directory (bench/lib.py): embedded PostgreSQL and Redis, one Daphne,
one Celery thread-pool worker, and the TGI simulator (20 ms to the first token, 50 tokens a second) in a process
that timestamps every token it sends. Every scenario measures the same work twice in one run: straight against the
simulator (the floor: a raw HTTP client streaming /v1/chat/completions) and through Parley's websocket (real
`websockets` clients speaking docs/protocol.md with the bot's allowed Origin), and reports both, their difference
and their ratio.

Writes bench/results/latest.json, latest.md and the charts latest_*.png (with --quick: quick.json, quick.md and
quick_*.png, so that a quick run never replaces the full one). Times are milliseconds unless named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import lib
from bench.answer_statements import answer_cpu, answer_statements

RESULTS = lib.BASE_DIR / "bench" / "results"
TARGETS = {
    "ttft_added_p50": 25,
    "ttft_added_p95": 150,
    "ttft_added_p95_at_200": 300,
    "token_lag_p95_at_200": 30,
    "daphne_kb_per_idle_visitor": 100,
    "worker_rss_mb": 1024,
    "cpu_ms_per_question": 25,
    "relay_tokens_per_s_30ms": 5000,
}
ANSWER_TOKENS = 60  # 1.2 s at 50 tokens a second
# The CPU per question of the target: the median of the round of 50 asking at once and two more.
CPU_ROUNDS_AT = 50
CPU_ROUNDS_EXTRA = 2
TTFT_ANSWER_TOKENS = 8
# The answers of the started-together steps (scenario 3 and scenario 6's steps): 2 s at 50 tokens a second.
STARTED_TOGETHER_TOKENS = 100
STARTED_TOGETHER_ANSWER_S = STARTED_TOGETHER_TOKENS / lib.SIMULATOR_TOKENS_PER_S
# Parley's own processes in a round's CPU figures: not the simulator, nor this load generator.
PARLEY_PROCESSES = ("daphne", "worker", "postgres", "redis")
# The relay rounds of scenario 6: 10 s at 50 tokens a second, so that every answer of a round of up to 200 started
# together still streams for seconds after the last one has started (`analyse`'s "all_streaming"). Under the
# worker's 512 new tokens an answer may have (inference's GenerationSettings.max_new_tokens).
RELAY_ANSWER_TOKENS = 500
ANSWER_TIMEOUT_S = 60.0  # an answer not done by then counts as an error (--answer-timeout)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- one measured round --------------------------------------------------------------------------------------


def sim_reset(stack: lib.Stack) -> None:
    lib.simulator_call(stack.simulator_url, "/_simulator/reset", {})
    lib.simulator_call(
        stack.simulator_url,
        "/_simulator/config",
        {"ttft_s": lib.SIMULATOR_TTFT_S, "tokens_per_s": lib.SIMULATOR_TOKENS_PER_S, "script_text": stack.script},
    )


def analyse(answers: list[lib.Answer], records: dict[str, dict], script: str) -> dict:
    """Errors, TTFT, per-token lag (simulator send → client receive), tokens lost, throughput."""
    from devtools.tgi_simulator import simulated_tokens

    expected = [piece for piece, _, _ in simulated_tokens(script)]
    errors: Counter = Counter()
    ttft, model_ttft, before_model, after_model, lags = [], [], [], [], []
    # Tokens the model sent once every answer of the round was streaming (after the last first token): the relay's
    # own lag, without the seconds in which the round's questions are still being prepared on the same cores.
    firsts_sent = [records[a.tag]["sent_at"][0] for a in answers if records.get(a.tag, {}).get("sent_at")]
    all_streaming_at = max(firsts_sent) if firsts_sent else None
    lags_once_streaming = []
    # Tokens the model sent while every answer of the round was streaming: after the last first token and before the
    # first answer's last token. With answers long enough for that window to be there (the relay rounds of the
    # scaling scenario), it holds as many answers streaming as the round asked, and nothing else: the relay's own
    # throughput and lag at that many answers.
    lasts_sent = [records[a.tag]["sent_at"][-1] for a in answers if records.get(a.tag, {}).get("sent_at")]
    all_streaming_until = min(lasts_sent) if lasts_sent else None
    lags_all_streaming = []
    tokens_lost = mismatched = delivered = lost_while_streaming = 0
    first_frames, last_frames = [], []
    # Each token's lag by when the model sent it, since the round's first question: a stall shows as a burst.
    asked_at = min((answer.sent_at for answer in answers), default=0.0)
    lags_by_sent: list[tuple[float, float]] = []
    for answer in answers:
        record = records.get(answer.tag)
        if answer.error:
            errors[answer.error.split(":")[0]] += 1
        elif answer.done is None or answer.done.get("status") != "complete":
            errors[f"status {answer.done and answer.done.get('status')}"] += 1
        received = [piece for piece, _, _ in simulated_tokens("".join(text for _, text in answer.frames))]
        in_order = 0
        for got, want in zip(received, expected, strict=False):
            if got != want:
                break
            in_order += 1
        tokens_lost += len(expected) - in_order
        if not answer.error:
            lost_while_streaming += len(expected) - in_order
        delivered += in_order
        if in_order != len(expected) or (answer.done and answer.done.get("text") != script):
            mismatched += 1
        if not answer.frames:
            continue
        first_frames.append(answer.frames[0][0])
        last_frames.append(answer.frames[-1][0])
        ttft.append((answer.first_token_at - answer.sent_at) * 1000)
        if record and record.get("sent_at"):
            model_ttft.append((record["sent_at"][0] - record["mono_started"]) * 1000)
            before_model.append((record["mono_started"] - answer.sent_at) * 1000)
            after_model.append((answer.first_token_at - record["sent_at"][0]) * 1000)
            answer_lags = lib.token_lags_ms(answer, record["sent_at"])[0]
            lags += answer_lags
            lags_by_sent += [(sent - asked_at, lag) for lag, sent in zip(answer_lags, record["sent_at"], strict=False)]
            lags_once_streaming += [lag for lag, sent in zip(answer_lags, record["sent_at"], strict=False)
                                    if sent > all_streaming_at]  # fmt: skip
            lags_all_streaming += [lag for lag, sent in zip(answer_lags, record["sent_at"], strict=False)
                                   if all_streaming_at < sent <= all_streaming_until]  # fmt: skip
        elif not answer.error:
            errors["no simulator record"] += 1
    window = (max(last_frames) - min(first_frames)) if first_frames else 0
    return {
        "answers": len(answers),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "answers_not_whole_or_out_of_order": mismatched,
        "tokens_lost": tokens_lost,
        # of which in answers that ended without an error frame or timeout (dropped mid-stream, or out of order)
        "tokens_lost_in_answers_without_error": lost_while_streaming,
        "ttft_ms": lib.stats(ttft),
        "model_ttft_ms": lib.stats(model_ttft),
        "before_model_request_ms": lib.stats(before_model),
        "model_first_token_to_client_ms": lib.stats(after_model),
        "token_lag_ms": lib.stats(lags),
        "token_lag_ms_once_streaming": lib.stats(lags_once_streaming),
        "all_streaming": {
            "window_s": round(all_streaming_until - all_streaming_at, 2),
            # the tokens of the window that reached their visitor, in order
            "tokens_per_s": round(len(lags_all_streaming) / (all_streaming_until - all_streaming_at), 1),
            "token_lag_ms": lib.stats(lags_all_streaming),
        }
        if all_streaming_at is not None and all_streaming_until > all_streaming_at
        else None,
        "tokens_per_s": round(delivered / window, 1) if window > 0 else None,
        "_ttft": ttft,
        "_lags": lags,
        "_lag_timeline": lag_timeline(lags_by_sent),
    }


def lag_timeline(lags_by_sent: list[tuple[float, float]], bin_s: float = 0.5) -> list[tuple[float, float]]:
    """(start of each `bin_s` since the round's first question, token lag p95 of the tokens the model sent in it)."""
    bins: dict[int, list[float]] = {}
    for sent_s, lag in lags_by_sent:
        bins.setdefault(int(sent_s // bin_s), []).append(lag)
    return [(round(n * bin_s, 2), round(lib.percentile(bins[n], 0.95), 1)) for n in sorted(bins)]


def compare(floor: dict, parley: dict) -> dict:
    def pair(metric: str, share: str) -> dict:
        a, b = floor[metric].get(share), parley[metric].get(share)
        if a is None or b is None:
            return {}
        return {"floor": a, "parley": b, "added": round(b - a, 2), "ratio": round(b / a, 2) if a else None}

    return {
        "ttft_p50": pair("ttft_ms", "p50"),
        "ttft_p95": pair("ttft_ms", "p95"),
        "token_lag_p50": pair("token_lag_ms", "p50"),
        "token_lag_p95": pair("token_lag_ms", "p95"),
    }


async def measured_round(
    stack: lib.Stack,
    visitors: list[lib.Visitor],
    asking: int,
    *,
    label: str,
    timeout_s: float = 0,
    profile: Path | None = None,
    with_floor: bool = True,
) -> dict:
    """`asking` questions at once, first straight to the simulator (unless not `with_floor`), then through Parley's
    websocket."""
    timeout_s = timeout_s or ANSWER_TIMEOUT_S
    sim_reset(stack)
    with lib.collector_paused() if with_floor else contextlib.nullcontext():
        floor_answers = await asyncio.gather(
            *(lib.direct_stream(stack.simulator_url, f"How do refunds work for order type {n}? [ref {label}-f{n}]",
                                timeout_s=timeout_s) for n in range(asking if with_floor else 0))
        )  # fmt: skip
    floor = analyse(floor_answers, lib.simulator_requests_by_tag(stack.simulator_url), stack.script)
    sim_reset(stack)
    profilers = start_profilers(stack, profile) if profile else []
    with lib.ResourceSampler({**stack.process_pids(), "simulator": stack.simulator.pid, "load_generator": os.getpid()},
                             trees=stack.service_pids()) as sampler, lib.collector_paused():  # fmt: skip
        answers = await asyncio.gather(
            *(visitor.ask(f"How do refunds work for order type {n}? [ref {label}-p{n}]", timeout_s=timeout_s)
              for n, visitor in enumerate(visitors[:asking]))
        )  # fmt: skip
    stop_profilers(profilers)
    parley = analyse(answers, lib.simulator_requests_by_tag(stack.simulator_url), stack.script)
    # How busy the machine was until the last visitor saw a first token: near all of its cores means the time to
    # first token waited for CPU, not for a lock or a queue.
    first_tokens = [answer.first_token_at for answer in answers if answer.first_token_at is not None]
    cpu_s, wall_s = (sampler.cpu_until(max(first_tokens)) if first_tokens else None) or (0.0, 0.0)
    # Parley's own: Daphne, the workers, PostgreSQL and Redis (not the simulator, nor this load generator).
    parley_names = {name for name in sampler.cpu_s if name.startswith(PARLEY_PROCESSES)}
    parley_cpu_s = ((sampler.cpu_until(max(first_tokens), parley_names) if first_tokens else None) or (0.0, 0.0))[0]
    cores = os.cpu_count() or 1
    return {
        "visitors_connected": len(visitors),
        "asking": asking,
        "floor": floor,
        "parley": parley,
        "compare": compare(floor, parley),
        "processes": sampler.summary(),
        "until_last_first_token": {
            "wall_s": round(wall_s, 2),
            "cpu_s_all_processes": round(cpu_s, 2),
            "machine_busy_share": round(cpu_s / (cores * wall_s), 2) if wall_s else None,
            "cpu_ms_per_question": round(parley_cpu_s * 1000 / asking, 1) if asking and wall_s else None,
            "cpu_ms_per_question_with_simulator_and_client": round(cpu_s * 1000 / asking, 1)
            if asking and wall_s
            else None,
        },
        "whole_round": {
            "wall_s": round(sampler.wall_s, 2),
            "cpu_ms_per_question": round(sum(sampler.cpu_s[name] for name in parley_names) * 1000 / asking, 1)
            if asking
            else None,
        },
    }


# --- profiling -------------------------------------------------------------------------------------------------


def start_profilers(stack: lib.Stack, prefix: Path) -> list[tuple[subprocess.Popen, Path]]:
    py_spy = Path(sys.executable).parent / "py-spy"
    started = []
    for name, process in (("daphne", stack.daphne), ("worker", stack.worker)):
        output = prefix.with_name(f"{prefix.name}_{name}.txt")
        started.append((subprocess.Popen(
            [str(py_spy), "record", "--pid", str(process.pid), "--format", "raw", "--output", str(output),
             "--rate", "100", "--nonblocking", "--threads"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ), output))  # fmt: skip
    time.sleep(1.0)
    return started


def stop_profilers(profilers: list[tuple[subprocess.Popen, Path]]) -> None:
    for process, _ in profilers:
        process.send_signal(signal.SIGINT)
    for process, _ in profilers:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def profile_top(path: Path, top: int = 15) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks, idle waits set apart."""
    if not path.exists():
        return {"error": "no profile written (py-spy needs ptrace permission)"}
    self_samples: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [frame for frame in stack.split(";") if not frame.startswith("thread (")]
        if not frames:
            continue
        total += n
        self_samples[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    idle_words = ("select (selectors", "poll (selectors", "wait (threading", "_worker (concurrent", "epoll",
                  "recv_into (socket", "readinto (socket", "sleep", "accept")  # fmt: skip
    busy = {frame: n for frame, n in self_samples.items() if not any(word in frame for word in idle_words)}
    busy_total = sum(busy.values())
    return {
        "samples": total,
        "busy_share": round(busy_total / total, 3) if total else None,
        "top_self_busy": [
            {"frame": frame, "share_of_busy": round(n / busy_total, 3)} for frame, n in Counter(busy).most_common(top)
        ],
        "top_inclusive": [
            {"frame": frame, "share": round(n / total, 3)}
            for frame, n in inclusive.most_common(60)
            if not frame.startswith(("<module>", "_bootstrap", "run (threading", "main ("))
        ][:top],
    }


# Which stage a sample belongs to: the first frame, walking from the innermost one outwards, that matches one of a
# stage's patterns (a file or a function, as py-spy writes frames: "function (path/file.py:line)").
STAGES = {
    "worker": [
        ("embedding", ("knowledge/embeddings.py", "sentence_transformers/", "torch/", "onnxruntime", "tokenizers/")),
        ("search", ("knowledge/retrieval.py", "knowledge/late_interaction.py", "knowledge/reranking.py")),
        ("prompt", ("inference/budget.py", "inference/prompts.py")),
        ("model stream", ("inference/client.py", "inference/errors.py", "huggingface_hub/", "httpx", "httpcore")),
        ("output guard", ("answers/guard.py",)),
        ("relay", ("realtime/relay.py", "realtime/channel_layer.py", "channels_redis/", "msgpack")),
        ("progress and stops", ("answers/progress.py", "answers/stops.py")),
        ("load and save", ("answers/pipeline.py", "answers/approved.py", "leads/", "django/db/", "psycopg")),
        ("queue (Celery)", ("celery/", "kombu/", "billiard/")),
    ],
    "daphne": [
        ("token fan-out", ("chat_token (", "chat_done (", "chat_typing (", "chat_error (", "channels_redis/",
                           "realtime/channel_layer.py", "msgpack", "autobahn/")),
        ("watchdog", ("answers/watchdog.py", "chat/answer_watch.py")),
        ("receive and save", ("on_message (", "on_hello (", "chat/session.py", "chat/conversations.py",
                              "chat/frames.py", "realtime/limits.py", "realtime/async_db.py", "django/db/",
                              "psycopg", "kombu/", "celery/")),
    ],
}  # fmt: skip
# A thread waiting for a socket or a lock is not using CPU, though py-spy may sample it as busy: the model server's
# next token, Redis's or PostgreSQL's answer.
IDLE_WORDS = ("select (selectors", "poll (selectors", "wait (threading", "_worker (concurrent", "epoll",
              "recv_into (socket", "readinto (socket", "sleep", "accept", "SyncStream.read (httpcore",
              "_read_from_socket (redis", "Connection.wait (psycopg", "wait (psycopg/", "acquire (")  # fmt: skip


def stage_shares(path: Path, kind: str) -> dict[str, float]:
    """The share of a process's busy samples (py-spy's collapsed stacks) in each stage of `STAGES[kind]`."""
    counts: Counter = Counter()
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith("thread (")]
        if not frames or any(word in frames[-1] for word in IDLE_WORDS):
            continue
        stage = "other"
        for frame in reversed(frames):
            found = next((name for name, patterns in STAGES[kind] if any(p in frame for p in patterns)), None)
            if found:
                stage = found
                break
        counts[stage] += int(count)
    total = sum(counts.values())
    return {stage: round(n / total, 3) for stage, n in counts.most_common()} if total else {}


def cpu_by_stage(round_result: dict, profile_prefix: Path, questions: int) -> dict:
    """CPU milliseconds per question of each process, and of Daphne's and the worker's stages: the round's CPU
    seconds per process, split in the shares a profiled round of the same size spent in each stage."""
    processes = round_result["processes"]
    per_process = {
        name: round(summary["cpu_s"] * 1000 / questions, 1) for name, summary in processes.items() if "cpu_s" in summary
    }
    stages = {}
    for kind in ("daphne", "worker"):
        shares = stage_shares(profile_prefix.with_name(f"{profile_prefix.name}_{kind}.txt"), kind)
        stages[kind] = {stage: round(share * per_process.get(kind, 0), 1) for stage, share in shares.items()}
    return {"cpu_ms_per_question_by_process": per_process, "cpu_ms_per_question_by_stage": stages}


# --- scenarios -------------------------------------------------------------------------------------------------


async def connect(urls: list[str], visitors: list[lib.Visitor], count: int) -> None:
    """Connect visitors until there are `count`, spread over the Daphne processes' URLs like a load balancer."""
    while len(visitors) < count:
        batch = [
            lib.Visitor(urls[(len(visitors) + n) % len(urls)], len(visitors) + n)
            for n in range(min(50, count - len(visitors)))
        ]
        await asyncio.gather(*(visitor.connect() for visitor in batch))
        visitors.extend(batch)


async def scenario_ttft(stack: lib.Stack, pairs: int) -> dict:
    """1. One visitor, one question at a time: the floor and Parley alternate, so drift hits both.

    The headline is a visitor's first question (each asked in a conversation of its own, the socket connected before
    the clock starts). The same number of follow-ups, asked one after another in one conversation, are measured
    apart: a follow-up's search also reads the visitor's earlier messages and the previous answer's passages."""
    stack.set_answer_tokens(TTFT_ANSWER_TOKENS)
    warm = lib.Visitor(stack.ws_url, 0)
    await warm.connect()
    for n in range(3):  # warm-up: the worker's embedding model, connections; not measured
        await warm.ask(f"Warm up {n} [ref warm{n}]", timeout_s=120)
    await warm.close()
    floor_answers, parley_answers = [], []
    follow_up_floor, follow_up_parley = [], []
    sim_reset(stack)
    with lib.collector_paused():
        for n in range(pairs):
            visitor = lib.Visitor(stack.ws_url, n + 1)
            await visitor.connect()
            floor_answers.append(await lib.direct_stream(stack.simulator_url, f"How does shipping work for order"
                                                         f" type {n}? [ref s1-f{n}]", timeout_s=30))  # fmt: skip
            parley_answers.append(await visitor.ask(f"How does shipping work for order type {n}? [ref s1-p{n}]",
                                                    timeout_s=30))  # fmt: skip
            await visitor.close()
        visitor = lib.Visitor(stack.ws_url, pairs + 1)
        await visitor.connect()
        for n in range(pairs):
            follow_up_floor.append(await lib.direct_stream(stack.simulator_url, f"And what about returns of order"
                                                           f" type {n}? [ref s1-ff{n}]", timeout_s=30))  # fmt: skip
            follow_up_parley.append(await visitor.ask(f"And what about returns of order type {n}? [ref s1-fp{n}]",
                                                      timeout_s=30))  # fmt: skip
        await visitor.close()
    records = lib.simulator_requests_by_tag(stack.simulator_url)
    floor = analyse(floor_answers, records, stack.script)
    parley = analyse(parley_answers, records, stack.script)
    follow_ups = {"floor": analyse(follow_up_floor, records, stack.script),
                  "parley": analyse(follow_up_parley, records, stack.script)}  # fmt: skip
    follow_ups["compare"] = compare(follow_ups["floor"], follow_ups["parley"])
    return {"pairs": pairs, "floor": floor, "parley": parley, "compare": compare(floor, parley),
            "follow_ups": follow_ups}  # fmt: skip


async def scenario_concurrency(stack: lib.Stack, levels: list[int], shares: list[float], profile_at: int | None,
                               profile_dir: Path, stage_profile_at: int | None = 50) -> dict:  # fmt: skip
    """2. N visitors connected, a share of them asking at once."""
    import psutil

    stack.set_answer_tokens(ANSWER_TOKENS)
    daphne = psutil.Process(stack.daphne.pid)
    visitors: list[lib.Visitor] = []
    rounds, idle_memory = [], []
    cpu_rounds: list[float | None] = []
    baseline = daphne.memory_info().rss
    previous_count, previous_rss = 0, baseline
    for level in levels:
        await connect(stack.ws_urls, visitors, level)
        await asyncio.sleep(1.0)
        rss = daphne.memory_info().rss
        idle_memory.append({
            "visitors": level, "daphne_rss_mb": round(rss / 2**20, 1),
            "kb_per_visitor_since_previous": round((rss - previous_rss) / 1024 / (level - previous_count), 1),
            "kb_per_visitor_since_start": round((rss - baseline) / 1024 / level, 1),
        })  # fmt: skip
        log(f"  {level} visitors connected: Daphne RSS {rss / 2**20:.1f} MB")
        previous_count, previous_rss = level, rss
        for share in shares:
            asking = lib.ceil_share(level, share)
            result = await measured_round(stack, visitors, asking, label=f"c{level}-{asking}")
            rounds.append(result)
            p = result["parley"]
            log(f"  {level} connected, {asking} asking: TTFT p95 {p['ttft_ms'].get('p95')} ms (floor"
                f" {result['floor']['ttft_ms'].get('p95')}), lag p95 {p['token_lag_ms'].get('p95')} ms, errors"
                f" {p['errors']}, lost {p['tokens_lost']}, {p['tokens_per_s']} tok/s")  # fmt: skip
        everyone_asking = [r for r in rounds if r["visitors_connected"] == level and r["asking"] == level]
        if level == CPU_ROUNDS_AT and everyone_asking:
            # The CPU per question of one round moves with the host by a few ms either way: the figure of the
            # target is the median of this level's all-asking round and CPU_ROUNDS_EXTRA more (not counted
            # elsewhere), and the report lists every round.
            cpu_rounds = [everyone_asking[-1]["until_last_first_token"]["cpu_ms_per_question"]]
            for n in range(CPU_ROUNDS_EXTRA):
                await asyncio.sleep(1.0)  # as before the first: the previous round's answers are saved and quiet
                extra = await measured_round(stack, visitors, level, label=f"cpu{level}-{n}", with_floor=False)
                cpu_rounds.append(extra["until_last_first_token"]["cpu_ms_per_question"])
            log(f"  CPU per question, {level} asking at once, by round: {cpu_rounds}")
        if stage_profile_at == level:
            log(f"  profiling a round of {level} asking at once for the CPU split by stage (extra, not counted)")
            await measured_round(stack, visitors, level, label=f"stage{level}", profile=profile_dir / f"stages_{level}")
        if profile_at == level:
            log(f"  profiling Daphne and the worker during {level} visitors asking (an extra round, not counted)")
            extra = await measured_round(stack, visitors, level, label=f"prof{level}",
                                         profile=profile_dir / f"profile_{level}")  # fmt: skip
            rounds_profile = {
                "visitors": level,
                "parley_ttft_p95_while_profiled": extra["parley"]["ttft_ms"].get("p95"),
                "daphne": profile_top(profile_dir / f"profile_{level}_daphne.txt"),
                "worker": profile_top(profile_dir / f"profile_{level}_worker.txt"),
            }
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    result = {"rounds": rounds, "idle_memory": idle_memory}
    if cpu_rounds:
        result["cpu_ms_per_question_rounds"] = cpu_rounds
    if profile_at in levels:
        result["profile"] = rounds_profile
    return result


async def scenario_throughput(stack: lib.Stack, steps: list[int]) -> dict:
    """3. More answers at once (50 tokens/s each) until the token lag p95 passes 30 ms."""
    stack.set_answer_tokens(STARTED_TOGETHER_TOKENS)
    visitors: list[lib.Visitor] = []
    points = []
    for asking in steps:
        await connect(stack.ws_urls, visitors, asking)
        result = await measured_round(stack, visitors, asking, label=f"t{asking}")
        p = result["parley"]
        points.append({
            "answers_at_once": asking, "offered_tokens_per_s": asking * lib.SIMULATOR_TOKENS_PER_S,
            "parley_tokens_per_s": p["tokens_per_s"], "floor_tokens_per_s": result["floor"]["tokens_per_s"],
            "token_lag_p95": p["token_lag_ms"].get("p95"),
            "token_lag_p95_once_streaming": p["token_lag_ms_once_streaming"].get("p95"),
            "floor_token_lag_p95": result["floor"]["token_lag_ms"].get("p95"),
            "errors": p["errors"], "tokens_lost": p["tokens_lost"], "processes": result["processes"],
        })  # fmt: skip
        log(f"  {asking} answers at once: {p['tokens_per_s']} tok/s relayed, lag p95 {p['token_lag_ms'].get('p95')}")
        if (p["token_lag_ms"].get("p95") or 1e9) > 30 and len(points) >= 2:
            break
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    under = [point for point in points if (point["token_lag_p95"] or 1e9) <= 30]
    best = max(under, key=lambda point: point["parley_tokens_per_s"] or 0) if under else None
    under_streaming = [point for point in points if (point["token_lag_p95_once_streaming"] or 1e9) <= 30]
    best_streaming = (
        max(under_streaming, key=lambda point: point["parley_tokens_per_s"] or 0) if under_streaming else None
    )
    return {"points": points, "max_tokens_per_s_under_30ms_p95": best and best["parley_tokens_per_s"],
            "at_answers_at_once": best and best["answers_at_once"],
            "max_tokens_per_s_under_30ms_p95_once_streaming":
                best_streaming and best_streaming["parley_tokens_per_s"]}  # fmt: skip


def scenario_retrieval(sizes: list[int], reuse: bool) -> dict:
    """4. bench/retrieval_scale.py (another engineer's), run as it is; its JSON read back."""
    path = RESULTS / "retrieval_scale.json"
    ran = False
    if not reuse:
        log(f"  running bench/retrieval_scale.py --sizes {' '.join(map(str, sizes))}")
        completed = subprocess.run([sys.executable, "-m", "bench.retrieval_scale", "--sizes",
                                    *map(str, sizes)], cwd=lib.BASE_DIR)  # fmt: skip
        ran = completed.returncode == 0
        if not ran:
            log("  retrieval_scale.py failed; reading the results it left, if any")
    if not path.exists():
        return {"error": "bench/results/retrieval_scale.json missing"}
    report = json.loads(path.read_text())
    from knowledge.retrieval import HNSW_EF_SEARCH

    out = {"ran_now": ran, "source": str(path.relative_to(lib.BASE_DIR)), "embedding_query_ms": report["embedding"]}
    for entry in report["sizes"]:
        hnsw = next((row for row in entry["hnsw"] if row["ef_search"] == HNSW_EF_SEARCH
                     and row["iterative_scan"] == "relaxed_order"), None)  # fmt: skip
        served = entry.get("served") or {}
        # Keyed by the size asked for (10000, 100000, 1000000); `chunks` adds the 2% inserted after the index.
        out[str(entry.get("size", entry["big_kb_chunks"] * 2))] = {
            "chunks": entry["chunks"],
            "search_hybrid_big_kb_p95": entry["search"]["hybrid_big_kb"]["p95_ms"],
            "search_hybrid_small_kbs_p95": entry["search"]["hybrid_small_kbs"]["p95_ms"],
            "search_vector_big_kb_p95": entry["search"]["vector_big_kb"]["p95_ms"],
            # What a question gets: the vector search chunk_search runs (HNSW for the big knowledge base, an exact
            # scan for the small ones) against the true nearest rows. Older files only have the forced-index rows.
            "hnsw_recall_at_10": served.get("recall_at_10", hnsw and hnsw["recall_at_10"]),
            "hnsw_recall_at_10_big_kb": served.get("recall_at_10_big_kb"),
            "hnsw_paths": f"big KB {served.get('path_big_kb', '?')}, small KBs {served.get('path_small_kbs', '?')}",
            # The index forced on every knowledge base, small ones included (production scans those exactly).
            "forced_hnsw_recall_at_10": hnsw and hnsw["recall_at_10"],
            "forced_hnsw_recall_at_10_small_kbs": hnsw and hnsw["recall_at_10_small_kbs"],
            "hnsw_ef_search": HNSW_EF_SEARCH,
        }
    return out


def scenario_ingestion(documents: int) -> dict:
    """5. Markdown documents through source_ingest → document_index with the local model; embed_documents timed."""
    import numpy as np

    from knowledge import embeddings, services
    from knowledge.services import knowledge_base_create, source_add_file, source_ingest

    rng = np.random.default_rng(3)
    words = [
        "shipping",
        "refund",
        "warranty",
        "invoice",
        "order",
        "parcel",
        "customer",
        "return",
        "repair",
        "battery",
        "screen",
        "delivery",
        "payment",
        "account",
        "member",
        "discount",
        "store",
        "hours",
        "address",
        "courier",
        "tracking",
        "label",
    ]
    embed_s, index_s = [0.0], [0.0]
    # Ingestion embeds through embed_documents_with_signatures (vectors and token signatures in one pass).
    original_embed = embeddings.LocalEmbedder.embed_documents_with_signatures
    original_index = services.document_index

    def timed_embed(self, texts):
        started = time.perf_counter()
        try:
            return original_embed(self, texts)
        finally:
            embed_s[0] += time.perf_counter() - started

    def timed_index(**kwargs):
        started = time.perf_counter()
        try:
            return original_index(**kwargs)
        finally:
            index_s[0] += time.perf_counter() - started

    embeddings.LocalEmbedder.embed_documents_with_signatures = timed_embed
    services.document_index = timed_index
    try:
        embeddings.get_embedder(None).embed_documents_with_signatures(["warm up"])
        embed_s[0] = 0.0
        kb = knowledge_base_create(name="ingestion bench")
        sources = []
        for n in range(documents):
            sections = []
            for s in range(6):
                paragraphs = [" ".join(rng.choice(words, 60)) + "." for _ in range(4)]
                sections.append(f"## Section {s}\n\n" + "\n\n".join(paragraphs))
            text = f"# Document {n}\n\n" + "\n\n".join(sections)
            sources.append(source_add_file(knowledge_base=kb, filename=f"doc{n}.md", data=text.encode()))
        started = time.perf_counter()
        chunks = 0
        for source in sources:
            chunks += source_ingest(source=source).chunks
        wall = time.perf_counter() - started
    finally:
        embeddings.LocalEmbedder.embed_documents_with_signatures = original_embed
        services.document_index = original_index
    return {
        "documents": documents,
        "chunks": chunks,
        "words_per_document": 6 * 4 * 60,
        "documents_per_s": round(documents / wall, 2),
        "chunks_per_s": round(chunks / wall, 1),
        "wall_s": round(wall, 2),
        "document_index_s": round(index_s[0], 2),
        "embed_documents_s": round(embed_s[0], 2),
        "ingest_model_share": round(embed_s[0] / index_s[0], 3) if index_s[0] else None,
        "share_outside_model": round(1 - embed_s[0] / index_s[0], 3) if index_s[0] else None,
    }


def scenario_soak(minutes: float) -> dict:
    """bench/soak.py (another engineer's), run as it is, with faults; its JSON read back."""
    path = RESULTS / "soak.json"
    log(f"soak: bench/soak.py --minutes {minutes}")
    completed = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", str(minutes),
                                "--json", str(path)], cwd=lib.BASE_DIR)  # fmt: skip
    if completed.returncode != 0 or not path.exists():
        return {"error": f"bench/soak.py exited with {completed.returncode}"}
    return {"minutes": minutes, "source": str(path.relative_to(lib.BASE_DIR)), "report": json.loads(path.read_text())}


# Scenario 6: (Daphne processes, worker processes) per configuration measured.
SCALING_CONFIGS = [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4)]
SCALING_CONFIGS_QUICK = [(1, 1), (1, 2), (2, 2)]
# Bursts of first questions per configuration; its questions/s is the median burst's.
BURST_ROUNDS = 3


async def first_question_burst(visitors: list[lib.Visitor], *, label: str) -> tuple[list[lib.Answer], float | None]:
    """Every one of `visitors` asks at once; their answers, and the burst's questions a second: the answers done
    without an error over the time from the first question sent to the last `done`."""
    started = time.monotonic()
    answers = await asyncio.gather(
        *(visitor.ask(f"How do refunds work for order type {n}? [ref {label}-{n}]", timeout_s=ANSWER_TIMEOUT_S)
          for n, visitor in enumerate(visitors))
    )  # fmt: skip
    wall = time.monotonic() - started
    done = [answer for answer in answers if answer.done and not answer.error]
    return answers, round(len(done) / wall, 1) if wall else None


def worker_threads(answers_at_once: int, workers: int) -> int:
    """Threads per worker process for `answers_at_once` spread over `workers` processes, with a few to spare."""
    return max(8, math.ceil(answers_at_once / workers) + 4)


async def scaling_cell(stack: lib.Stack, *, burst: int, steps: list[int], relay_steps: list[int]) -> dict:
    """One configuration: how many questions a second it answers (the median of BURST_ROUNDS bursts of `burst`
    short answers to first questions, each from its first question sent to its last `done`), the most tokens a
    second it relays within 30 ms of lag p95 (answers at once from `steps`, 100 tokens each), the same while every
    answer streams (answers at once from `relay_steps`, RELAY_ANSWER_TOKENS each, counting the tokens sent while
    all of them stream), and each process's memory."""
    stack.set_answer_tokens(TTFT_ANSWER_TOKENS)
    visitors: list[lib.Visitor] = []
    await connect(stack.ws_urls, visitors, max(burst, *steps, *relay_steps))
    # The later bursts' visitors are new too, so that every burst asks first questions (the first burst's visitors
    # go on to the steps below, as they always did).
    later_burst_visitors: list[lib.Visitor] = []
    await connect(stack.ws_urls, later_burst_visitors, (BURST_ROUNDS - 1) * burst)
    for n, visitor in enumerate(visitors[: 2 * len(stack.workers)]):  # warm-up: every worker loads its model
        await visitor.ask(f"Warm up {n} [ref sw{n}]", timeout_s=120)
    sim_reset(stack)
    answers, burst_rates = [], []
    with lib.ResourceSampler({**stack.process_pids()}, trees=stack.service_pids()) as sampler, lib.collector_paused():
        for round_ in range(BURST_ROUNDS):
            asking = visitors[:burst] if round_ == 0 else later_burst_visitors[(round_ - 1) * burst : round_ * burst]
            round_answers, rate = await first_question_burst(asking, label=f"sb{round_}")
            burst_rates.append(rate)
            answers += round_answers
    await asyncio.gather(*(visitor.close() for visitor in later_burst_visitors))
    burst_result = analyse(answers, lib.simulator_requests_by_tag(stack.simulator_url), stack.script)
    stack.set_answer_tokens(STARTED_TOGETHER_TOKENS)
    points = []
    for asking in steps:
        result = await measured_round(stack, visitors, asking, label=f"sc{asking}", with_floor=False)
        p = result["parley"]
        points.append({"answers_at_once": asking, "tokens_per_s": p["tokens_per_s"],
                       "token_lag_p95": p["token_lag_ms"].get("p95"),
                       "token_lag_p95_once_streaming": p["token_lag_ms_once_streaming"].get("p95"),
                       "errors": p["errors"], "tokens_lost": p["tokens_lost"],
                       "processes": result["processes"]})  # fmt: skip
        if (p["token_lag_ms_once_streaming"].get("p95") or 1e9) > 30 and len(points) >= 2:
            break
    stack.set_answer_tokens(RELAY_ANSWER_TOKENS)
    relay_points = []
    for asking in relay_steps:
        result = await measured_round(stack, visitors, asking, label=f"sr{asking}", with_floor=False)
        all_streaming = result["parley"]["all_streaming"] or {}
        relay_points.append({"answers_at_once": asking, "tokens_per_s": all_streaming.get("tokens_per_s"),
                             "token_lag_p95": (all_streaming.get("token_lag_ms") or {}).get("p95"),
                             "window_s": all_streaming.get("window_s"),
                             "errors": result["parley"]["errors"], "tokens_lost": result["parley"]["tokens_lost"],
                             "processes": result["processes"]})  # fmt: skip
        if (relay_points[-1]["token_lag_p95"] or 1e9) > 30:
            break
    await asyncio.gather(*(visitor.close() for visitor in visitors))
    under_all_streaming = [
        point
        for point in relay_points
        if (point["token_lag_p95"] or 1e9) <= 30 and not point["errors"] and not point["tokens_lost"]
    ]
    best_all_streaming = max(under_all_streaming, key=lambda point: point["tokens_per_s"] or 0, default=None)
    under = [point for point in points if (point["token_lag_p95"] or 1e9) <= 30]
    best = max(under, key=lambda point: point["tokens_per_s"] or 0) if under else None
    under_streaming = [point for point in points if (point["token_lag_p95_once_streaming"] or 1e9) <= 30]
    best_streaming = max(under_streaming, key=lambda point: point["tokens_per_s"] or 0) if under_streaming else None
    memory = {name: summary["rss_max_mb"] for name, summary in sampler.summary().items() if "rss_max_mb" in summary}
    return {
        # The median burst's: one burst of about 2 s is a small sample of a shared machine's time.
        "questions_per_s": statistics.median(burst_rates) if None not in burst_rates else None,
        "questions_per_s_bursts": burst_rates,
        "burst": burst,
        "burst_errors": burst_result["errors"],
        "burst_ttft_p50": burst_result["ttft_ms"].get("p50"),
        "burst_ttft_p95": burst_result["ttft_ms"].get("p95"),
        "burst_cpu_share": {name: value.get("cpu_share") for name, value in sampler.summary().items()},
        "relay_tokens_per_s_30ms": best and best["tokens_per_s"],
        "at_answers_at_once": best and best["answers_at_once"],
        "relay_tokens_per_s_30ms_once_streaming": best_streaming and best_streaming["tokens_per_s"],
        "once_streaming_at_answers_at_once": best_streaming and best_streaming["answers_at_once"],
        "relay_tokens_per_s_30ms_all_streaming": best_all_streaming and best_all_streaming["tokens_per_s"],
        "all_streaming_at_answers_at_once": best_all_streaming and best_all_streaming["answers_at_once"],
        "points": points,
        "relay_points": relay_points,
        "rss_mb": memory,
    }


async def scenario_scaling(
    stack: lib.Stack, configs: list[tuple[int, int]], *, burst: int, steps: list[int], relay_steps: list[int]
) -> dict:
    """6. Throughput and memory for each number of Daphne and worker processes, on the same database, Redis and
    simulator; visitors are spread over the Daphne processes as a load balancer would."""
    cells = []
    for daphnes, workers in configs:
        concurrency = worker_threads(max(burst, *steps, *relay_steps), workers)
        log(f"  {daphnes} Daphne, {workers} worker process(es) of {concurrency} threads")
        stack.processes_start(workers=workers, daphnes=daphnes, worker_concurrency=concurrency)
        cell = await scaling_cell(stack, burst=burst, steps=steps, relay_steps=relay_steps)
        cells.append({"daphne_processes": daphnes, "worker_processes": workers, "worker_threads": concurrency, **cell})
        log(f"    {cell['questions_per_s']} questions/s, {cell['relay_tokens_per_s_30ms']} tokens/s within 30 ms,"
            f" {cell['relay_tokens_per_s_30ms_all_streaming']} while all stream, RSS {cell['rss_mb']}")  # fmt: skip
    return {"cells": cells}


def bursts_note(cell: dict) -> str:
    """Each burst's questions/s beside the median, for runs that have them."""
    bursts = cell.get("questions_per_s_bursts")
    return f" ({' / '.join(str(rate) for rate in bursts)})" if bursts else ""


def statements_line(statements: dict) -> str:
    return ", ".join(
        f"{kind.replace('_', ' ')} {counts['save']} + {counts['answer']} = {counts['total']}"
        for kind, counts in statements.items()
    )


def raw_forward_pass_ms() -> dict:
    """One 16-token question through the embedding model on one thread, median ms, with the configured backend
    (`EMBEDDING_BACKEND`, `EMBEDDING_QUERY_PRECISION`), with ONNX in float32 (the default, comparable between runs
    whatever is configured) and with torch: machines of this kind differ by 3x, and this says how fast this one is."""
    # The child runs without Django's settings: it is given the two settings from the environment, as the stack's
    # processes read them.
    code = (
        "import json, os; from bench.embedding_backends import forward_pass_ms;"
        " print(json.dumps({'configured': forward_pass_ms(os.environ.get('EMBEDDING_BACKEND') or None,"
        " query_precision=os.environ.get('EMBEDDING_QUERY_PRECISION') or None),"
        " 'onnx_float32': forward_pass_ms('onnx', query_precision='float32'), 'torch': forward_pass_ms('torch')}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "", "HF_HUB_OFFLINE": "1"}
    try:
        output = subprocess.run(
            [sys.executable, "-c", code], cwd=lib.BASE_DIR, env=env, capture_output=True, text=True, check=True
        ).stdout
        return {key: round(value, 2) for key, value in json.loads(output.strip().splitlines()[-1]).items()}
    except (subprocess.CalledProcessError, ValueError, IndexError) as error:
        return {"error": str(error)[:200]}


# --- report ----------------------------------------------------------------------------------------------------


def strip_private(value):
    if isinstance(value, dict):
        return {key: strip_private(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, list):
        return [strip_private(item) for item in value]
    return value


def headline(results: dict) -> dict:
    s1 = results["scenario_1_ttft"]["compare"]
    top = {
        "ttft_added_p50": s1["ttft_p50"]["added"],
        "ttft_added_p95": s1["ttft_p95"]["added"],
    }
    follow_ups = results["scenario_1_ttft"].get("follow_ups")
    if follow_ups:
        top["ttft_added_p50_follow_up"] = follow_ups["compare"]["ttft_p50"].get("added")
        top["ttft_added_p95_follow_up"] = follow_ups["compare"]["ttft_p95"].get("added")
    rounds = results.get("scenario_2_concurrency", {}).get("rounds", [])
    errors = results["scenario_1_ttft"]["parley"]["errors"]
    lost = results["scenario_1_ttft"]["parley"]["tokens_lost"]
    if follow_ups:
        errors += follow_ups["parley"]["errors"]
        lost += follow_ups["parley"]["tokens_lost"]
    if rounds:
        largest = max(rounds, key=lambda r: (r["asking"], r["visitors_connected"]))
        top["n_concurrent"] = largest["asking"]
        top["n_connected"] = largest["visitors_connected"]
        top["ttft_added_p95_at_n"] = largest["compare"]["ttft_p95"].get("added")
        top["token_lag_p95_at_n"] = largest["parley"]["token_lag_ms"].get("p95")
        at_200 = [r for r in rounds if r["asking"] == 200]
        if at_200:
            top["ttft_added_p95_at_200"] = at_200[0]["compare"]["ttft_p95"].get("added")
            top["token_lag_p95_at_200"] = at_200[0]["parley"]["token_lag_ms"].get("p95")
        errors += sum(r["parley"]["errors"] for r in rounds)
        lost += sum(r["parley"]["tokens_lost"] for r in rounds)
        top["worker_rss_max_mb"] = max(r["processes"]["worker"]["rss_max_mb"] for r in rounds)
        top["daphne_rss_max_mb"] = max(r["processes"]["daphne"]["rss_max_mb"] for r in rounds)
        idle = results["scenario_2_concurrency"]["idle_memory"]
        top["daphne_kb_per_idle_visitor"] = idle[-1]["kb_per_visitor_since_previous"]
        top["daphne_kb_per_idle_visitor_at"] = idle[-1]["visitors"]
    top["errors"] = errors
    top["tokens_lost"] = lost
    s3 = results.get("scenario_3_throughput")
    if s3:
        top["max_relay_tokens_per_s_under_30ms"] = s3["max_tokens_per_s_under_30ms_p95"]
    at_50 = [r for r in rounds if r["asking"] == 50]
    cpu_rounds = [value for value in results.get("scenario_2_concurrency", {}).get("cpu_ms_per_question_rounds", [])
                  if value is not None]  # fmt: skip
    if cpu_rounds:
        top["cpu_ms_per_question"] = round(statistics.median(cpu_rounds), 1)
        top["cpu_ms_per_question_rounds"] = cpu_rounds
    elif at_50:
        top["cpu_ms_per_question"] = at_50[-1]["until_last_first_token"]["cpu_ms_per_question"]
    s6 = results.get("scenario_6_scaling")
    one = [c for c in (s6 or {}).get("cells", []) if (c["daphne_processes"], c["worker_processes"]) == (1, 1)]
    top["relay_tokens_per_s_30ms"] = (s3 or {}).get("max_tokens_per_s_under_30ms_p95") or (
        one[0]["relay_tokens_per_s_30ms"] if one else None
    )
    # The same, counting only the tokens sent once every answer of a round was streaming (not a target's figure:
    # it says how much of the lag is the relay's own, and how much the round's questions being prepared).
    top["relay_tokens_per_s_30ms_once_streaming"] = (s3 or {}).get(
        "max_tokens_per_s_under_30ms_p95_once_streaming"
    ) or (one[0]["relay_tokens_per_s_30ms_once_streaming"] if one else None)
    # The relay's own figure: tokens sent while every answer of a round streams (no question of the round is still
    # being prepared), the most a second within 30 ms of lag p95. The figure above counts a round from its first
    # token to its last, preparation included (docs/scaling-rounds.md, the round of 2026-12-04 night).
    top["relay_tokens_per_s_30ms_all_streaming"] = one[0].get("relay_tokens_per_s_30ms_all_streaming") if one else None
    if one and one[0].get("questions_per_s"):
        top["relay_started_together_bound"] = started_together_bound(one[0]["questions_per_s"])
    if s6:
        top["scaling"] = [
            {key: cell.get(key) for key in ("daphne_processes", "worker_processes", "questions_per_s",
                                        "relay_tokens_per_s_30ms", "relay_tokens_per_s_30ms_once_streaming",
                                        "relay_tokens_per_s_30ms_all_streaming", "rss_mb")}
            for cell in s6["cells"]
        ]  # fmt: skip
    if results.get("answer_path_cpu_ms"):
        top["answer_path_cpu_ms"] = results["answer_path_cpu_ms"]
    top["raw_forward_pass_ms"] = results.get("raw_forward_pass_ms")
    statements = results.get("answer_path_statements")
    if statements:
        top["answer_path_statements"] = {kind: counts["total"] for kind, counts in statements.items()}
    s4 = results.get("scenario_4_retrieval")
    if s4 and "error" not in s4:
        for size, key in ((100000, "100k"), (1000000, "1m")):
            # None (and a line under "Gaps") when retrieval_scale.py has not measured that size.
            top[f"search_p95_{key}"] = s4[str(size)]["search_hybrid_big_kb_p95"] if str(size) in s4 else None
        largest = max((int(k) for k in s4 if k.isdigit()), default=None)
        if largest:
            top["hnsw_recall_at_10"] = s4[str(largest)]["hnsw_recall_at_10"]
    s5 = results.get("scenario_5_ingestion")
    if s5:
        top["ingest_model_share"] = s5["ingest_model_share"]
    return top


def started_together_bound(questions_per_s: float, *, target: float = TARGETS["relay_tokens_per_s_30ms"]) -> dict:
    """What `relay_tokens_per_s_30ms` can reach when questions are prepared at `questions_per_s` (the one-Daphne,
    one-worker burst figure), whatever the relay does. It counts a round of answers started together from its first
    frame to its last: n answers of 100 tokens at 50 tokens/s take about n / q seconds to start and 2 s each to
    stream, so the round relays about 100·n / (n/q + 2) tokens a second, below 100·q however many answers it holds.
    `answers_at_once_needed`: the smallest n that reaches `target` by that model (None when 100·q does not). Such a
    round does not have all its answers streaming at once: it takes n / q seconds to start them, and about 2·q of them
    stream at a time (`answers_streaming_at_most`; they send the ceiling's tokens a second) while the rest are still
    being prepared, on the same cores. The model leaves out that preparing and relaying slow each other down; at 200-800
    answers this machine sustained about 3,100-3,900 tokens/s, with the lag far past 30 ms (bench.started_together;
    docs/scaling-rounds.md, the round of 2026-12-05 night)."""
    tokens, answer_s = STARTED_TOGETHER_TOKENS, STARTED_TOGETHER_ANSWER_S
    needed = None
    if tokens * questions_per_s > target:
        needed = math.ceil(target * answer_s / (tokens - target / questions_per_s))
    return {
        "questions_per_s": questions_per_s,
        "ceiling_tokens_per_s": round(tokens * questions_per_s),
        "answers_at_once_needed": needed,
        "answers_streaming_at_most": needed and min(needed, round(questions_per_s * answer_s)),
    }


def started_together_tokens_per_s(answers: int, questions_per_s: float) -> float:
    """`started_together_bound`'s model: the tokens a second of a round of `answers` started together, prepared at
    `questions_per_s`, when preparing and relaying do not slow each other down."""
    return STARTED_TOGETHER_TOKENS * answers / (answers / questions_per_s + STARTED_TOGETHER_ANSWER_S)


def two_workers(top: dict) -> dict:
    cells = {(c["daphne_processes"], c["worker_processes"]): c for c in top.get("scaling") or []}
    one, two = cells.get((1, 1)), cells.get((1, 2))
    if not one or not two:
        return {"value": None, "target": ">= 0.95 x one worker's", "met": None}
    ratios = [
        round((two[key] or 0) / one[key], 2) if one[key] else None
        for key in ("questions_per_s", "relay_tokens_per_s_30ms")
    ]
    # Within the run-to-run noise of one measurement (5%) counts as no worse.
    return {
        "value": ratios,
        "target": ">= 0.95 x one worker's",
        "met": all(r is not None and r >= 0.95 for r in ratios),
    }


def targets(top: dict) -> dict:
    """Each target with its value, its limit and whether the value meets it; `met` is None where this run did not
    measure the value (a quick run has no round of 200 at once, `--skip 6` no scaling cells)."""

    def check(key: str, limit: float) -> dict:
        value = top.get(key)
        return {"value": value, "target": f"< {limit}", "met": None if value is None else value < limit}

    def at_most(key: str, limit: float) -> dict:
        value = top.get(key)
        return {"value": value, "target": f"<= {limit}", "met": None if value is None else value <= limit}

    def at_least(key: str, limit: float) -> dict:
        value = top.get(key)
        return {"value": value, "target": f">= {limit}", "met": None if value is None else value >= limit}

    return {
        "ttft_added_p50 (1 visitor, first questions)": check("ttft_added_p50", TARGETS["ttft_added_p50"]),
        "ttft_added_p95 (1 visitor, first questions)": check("ttft_added_p95", TARGETS["ttft_added_p95"]),
        "ttft_added_p95 (200 asking at once)": check("ttft_added_p95_at_200", TARGETS["ttft_added_p95_at_200"]),
        "token_lag_p95 (200 answers at once)": check("token_lag_p95_at_200", TARGETS["token_lag_p95_at_200"]),
        "cpu_ms_per_question (50 asking at once, Daphne + workers + PostgreSQL + Redis)": at_most(
            "cpu_ms_per_question", TARGETS["cpu_ms_per_question"]
        ),
        "relay_tokens_per_s_30ms (one Daphne, one worker)": at_least(
            "relay_tokens_per_s_30ms", TARGETS["relay_tokens_per_s_30ms"]
        ),
        "relay_tokens_per_s_30ms_all_streaming (one Daphne, one worker; while every answer streams)": at_least(
            "relay_tokens_per_s_30ms_all_streaming", TARGETS["relay_tokens_per_s_30ms"]
        ),
        "two worker processes no worse than one (questions/s, tokens/s within 30 ms)": two_workers(top),
        "errors": {"value": top.get("errors"), "target": "0", "met": top.get("errors") == 0},
        "tokens lost or out of order": {
            "value": top.get("tokens_lost"),
            "target": "0",
            "met": top.get("tokens_lost") == 0,
        },
        "Daphne KB per idle visitor": check("daphne_kb_per_idle_visitor", TARGETS["daphne_kb_per_idle_visitor"]),
        "worker RSS MB (max)": check("worker_rss_max_mb", TARGETS["worker_rss_mb"]),
        "hybrid search p95 at 100k chunks": check("search_p95_100k", 20),
        "hybrid search p95 at 1M chunks": check("search_p95_1m", 50),
        "recall@10 of the served vector search against exact": at_least("hnsw_recall_at_10", 0.95),
        "ingestion: share of time in the model": at_least("ingest_model_share", 0.8),
    }


def markdown(results: dict) -> str:
    lines = [f"# Parley benchmark ({results['mode']} run, {results['finished']})", "",
              f"`{results['command']}` on {results['machine']}. Simulator: {lib.SIMULATOR_TTFT_S * 1000:.0f} ms to the"
              f" first token, {lib.SIMULATOR_TOKENS_PER_S:.0f} tokens/s. Milliseconds unless named. Raw embedding"
              f" forward pass on this machine (one 16-token question, one thread, median):"
              f" {results.get('raw_forward_pass_ms')}.", "",
              "## Targets", "", "| target | value | limit | met |", "| --- | --- | --- | --- |"]  # fmt: skip
    for name, row in results["targets"].items():
        met = "not measured" if row["met"] is None else "yes" if row["met"] else "**no**"
        lines.append(f"| {name} | {row['value']} | {row['target']} | {met} |")
    bound = results["headline"].get("relay_started_together_bound") if results.get("headline") else None
    if bound:
        needed = bound["answers_at_once_needed"]
        lines += ["", f"`relay_tokens_per_s_30ms` counts 100-token answers started together, from a round's first"
                  f" frame to its last. At this run's {bound['questions_per_s']} questions prepared a second (one"
                  f" Daphne, one worker) it cannot pass {bound['ceiling_tokens_per_s']} tokens/s, whatever the relay"
                  " does; "
                  + (f"reaching {TARGETS['relay_tokens_per_s_30ms']} would take about {needed} answers started"
                     f" together, about {bound['answers_streaming_at_most']} of them streaming"
                     f" ({bound['ceiling_tokens_per_s']} tokens/s) while the rest are prepared on the same"
                     " cores, for as long as the round lasts; `bench.started_together` measures such rounds." if needed
                     else f"{TARGETS['relay_tokens_per_s_30ms']} is out of its reach.")]  # fmt: skip
    s1 = results["scenario_1_ttft"]
    lines += ["", f"## 1. Time to first token, one visitor ({s1['pairs']} pairs, 10k chunks)", ""]
    parts = [("First questions (each in a conversation of its own)", s1)]
    if s1.get("follow_ups"):
        parts.append(("Follow-ups (one after another in one conversation)", s1["follow_ups"]))
    for title, part in parts:
        lines += [f"{title}:", "", "| | floor (simulator) | Parley | added | ratio |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for key in ("ttft_p50", "ttft_p95", "token_lag_p50", "token_lag_p95"):
            row = part["compare"][key]
            if row:
                lines.append(f"| {key} | {row['floor']} | {row['parley']} | {row['added']} | {row['ratio']} |")
        p = part["parley"]
        lines += ["", "Parley's TTFT split: websocket message → model request p50"
                  f" {p['before_model_request_ms'].get('p50')}"
                  f" / p95 {p['before_model_request_ms'].get('p95')}; model's own TTFT p50"
                  f" {p['model_ttft_ms'].get('p50')}; model's first token → visitor p50"
                  f" {p['model_first_token_to_client_ms'].get('p50')} / p95"
                  f" {p['model_first_token_to_client_ms'].get('p95')}.", ""]  # fmt: skip
    statements = results.get("answer_path_statements")
    if statements:
        lines += ["Database statements per question (bench/answer_statements.py), saving the visitor's message"
                  f" (Daphne) + answering it (the worker): {statements_line(statements)}.", ""]  # fmt: skip
    cpu = results.get("answer_path_cpu_ms")
    if cpu:
        lines += [f"CPU to save a first question and to answer it, one at a time in one process (every thread, no"
                  f" Celery, no websocket; {cpu['questions']} questions, {cpu['answer_tokens']} tokens each): save"
                  f" p50 {cpu['save_ms']['p50']} ms, answer p50 {cpu['answer_ms']['p50']} ms (p90"
                  f" {cpu['save_ms']['p90']} / {cpu['answer_ms']['p90']}).", ""]  # fmt: skip
    s2 = results.get("scenario_2_concurrency")
    if s2:
        lines += ["", "## 2. Concurrency", "",
                  "| connected | asking | TTFT p50 floor / Parley | TTFT p95 floor / Parley | added p95 | lag p95"
                  " floor / Parley | tok/s | errors | lost | Daphne RSS MB | worker RSS MB | CPU Daphne / worker /"
                  " PostgreSQL / Redis / sim / client | to the last first token: machine busy, CPU ms per question |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in s2["rounds"]:
            f, q, c, pr = r["floor"], r["parley"], r["compare"], r["processes"]
            lines.append(
                f"| {r['visitors_connected']} | {r['asking']} | {f['ttft_ms'].get('p50')} / {q['ttft_ms'].get('p50')} |"
                f" {f['ttft_ms'].get('p95')} / {q['ttft_ms'].get('p95')} | {c['ttft_p95'].get('added')} |"
                f" {f['token_lag_ms'].get('p95')} / {q['token_lag_ms'].get('p95')} | {q['tokens_per_s']} |"
                f" {q['errors']} | {q['tokens_lost']} | {pr['daphne']['rss_max_mb']} | {pr['worker']['rss_max_mb']} |"
                f" {pr['daphne']['cpu_share']} / {pr['worker']['cpu_share']} /"
                f" {pr.get('postgres', {}).get('cpu_share', '-')} / {pr.get('redis', {}).get('cpu_share', '-')} /"
                f" {pr['simulator']['cpu_share']} / {pr['load_generator']['cpu_share']} |"
                f" {r.get('until_last_first_token', {}).get('machine_busy_share') or '-'},"
                f" {r.get('until_last_first_token', {}).get('cpu_ms_per_question') or '-'} |"
            )  # fmt: skip
        if s2.get("cpu_ms_per_question_rounds"):
            lines += [
                "",
                f"CPU per question until the last first token, {CPU_ROUNDS_AT} asking at once, by round (the first"
                f" is the table's): {' / '.join(str(value) for value in s2['cpu_ms_per_question_rounds'])};"
                f" median {results['headline'].get('cpu_ms_per_question', '-')}, the target's figure.",
            ]
        cpu = s2.get("cpu_at_50")
        if cpu:
            lines += [
                "",
                "CPU per question at 50 asking at once (ms, the whole round; split by stage with a profiled"
                " round of the same size): by process "
                + ", ".join(f"{name} {value}" for name, value in cpu["cpu_ms_per_question_by_process"].items())
                + ".",
            ]
            for kind, stages in cpu["cpu_ms_per_question_by_stage"].items():
                lines.append(f"- {kind}: " + ", ".join(f"{stage} {value}" for stage, value in stages.items()))
        lines += ["", "Idle connections (Daphne RSS): " + "; ".join(
            f"{m['visitors']} visitors {m['daphne_rss_mb']} MB ({m['kb_per_visitor_since_previous']} KB/visitor since"
            f" the previous level)" for m in s2["idle_memory"])]  # fmt: skip
        if "profile" in s2:
            lines += [
                "",
                f"Profile (py-spy, {s2['profile']['visitors']} asking at once, an extra round): top frames in"
                " latest.json → scenario_2_concurrency.profile.",
            ]
            for name in ("daphne", "worker"):
                prof = s2["profile"][name]
                if "top_self_busy" in prof:
                    lines.append(f"- {name}: busy {prof['busy_share']:.0%} of samples; top self (share of busy): "
                                 + "; ".join(f"`{row['frame']}` {row['share_of_busy']:.0%}"
                                             for row in prof["top_self_busy"][:6]))  # fmt: skip
    s3 = results.get("scenario_3_throughput")
    if s3:
        lines += ["", "## 3. Streaming throughput (one Daphne, one worker)", "",
                  f"Highest relayed under 30 ms lag p95: **{s3['max_tokens_per_s_under_30ms_p95']} tokens/s** (at"
                  f" {s3['at_answers_at_once']} answers at once).", "",
                  "| answers at once | offered tok/s | Parley tok/s | floor tok/s | lag p95 floor / Parley | errors |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for pt in s3["points"]:
            lines.append(f"| {pt['answers_at_once']} | {pt['offered_tokens_per_s']:.0f} | {pt['parley_tokens_per_s']} |"
                         f" {pt['floor_tokens_per_s']} | {pt['floor_token_lag_p95']} / {pt['token_lag_p95']} |"
                         f" {pt['errors']} |")  # fmt: skip
    s6 = results.get("scenario_6_scaling")
    if s6:
        lines += ["", "## 6. Scaling with processes", "",
                  "Each configuration on the same database, Redis and simulator; visitors spread over the Daphne"
                  " processes. Questions/s: the median of three bursts of 100 short answers to first questions (each"
                  " burst's in brackets, where the run has them), each from the first question sent to the last"
                  " `done`. Tokens/s: the most relayed with token lag p95 within 30 ms (100-token answers, started"
                  " together); once streaming: the same, counting the tokens sent after the round's last first token,"
                  " when no question of the round is still being prepared. All streaming: answers of"
                  f" {RELAY_ANSWER_TOKENS} tokens started together, counting the tokens sent while every one of them"
                  " streams (after the last first token, before the first answer's last token): the relay's own"
                  " throughput and lag at that many answers.", "",
                  "| Daphne | workers (threads each) | questions/s | burst TTFT p50 / p95 | tokens/s within 30 ms (at"
                  " answers at once) | once streaming | lag p95 / once streaming, by answers at once | all streaming |"
                  " all streaming: tokens/s, lag p95 by answers at once | RSS MB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for c in s6["cells"]:
            rss = ", ".join(f"{name} {mb}" for name, mb in c["rss_mb"].items())
            steps = ", ".join(f"{pt['answers_at_once']}: {pt['token_lag_p95']} /"
                              f" {pt.get('token_lag_p95_once_streaming')}" for pt in c["points"])  # fmt: skip
            relay_steps = ", ".join(f"{pt['answers_at_once']}: {pt['tokens_per_s']}, {pt['token_lag_p95']}"
                                    for pt in c.get("relay_points", []))  # fmt: skip
            lines.append(f"| {c['daphne_processes']} | {c['worker_processes']} ({c['worker_threads']}) |"
                         f" {c['questions_per_s']}{bursts_note(c)} | {c['burst_ttft_p50']} / {c['burst_ttft_p95']} |"
                         f" {c['relay_tokens_per_s_30ms']} ({c['at_answers_at_once']}) |"
                         f" {c.get('relay_tokens_per_s_30ms_once_streaming')}"
                         f" ({c.get('once_streaming_at_answers_at_once')}) | {steps} |"
                         f" {c.get('relay_tokens_per_s_30ms_all_streaming')}"
                         f" ({c.get('all_streaming_at_answers_at_once')}) | {relay_steps} | {rss} |")  # fmt: skip
    s4 = results.get("scenario_4_retrieval")
    if s4:
        lines += ["", "## 4. Retrieval alone (bench/retrieval_scale.py)", ""]
        if "error" in s4:
            lines.append(f"Not available: {s4['error']}")
        else:
            ef_search = next((row["hnsw_ef_search"] for key, row in s4.items() if key.isdigit()), "?")
            lines += [f"Source: `{s4['source']}` (run now: {s4['ran_now']}).", "",
                      "Recall@10 against exact search: *served* is the vector search chunk_search runs (paths in the"
                      " last column), *forced* the HNSW index forced on every knowledge base, the small ones included"
                      f" (ef_search {ef_search}, relaxed order).", "",
                      "| chunks | hybrid p95, big KB | hybrid p95, small KBs | vector p95, big KB | recall@10 served"
                      " | recall@10 forced (small KBs) | paths |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for size, row in s4.items():
                if size.isdigit():
                    lines.append(f"| {row.get('chunks', size)} | {row['search_hybrid_big_kb_p95']}"
                                 f" | {row['search_hybrid_small_kbs_p95']} | {row['search_vector_big_kb_p95']}"
                                 f" | {row['hnsw_recall_at_10']} | {row.get('forced_hnsw_recall_at_10')}"
                                 f" ({row.get('forced_hnsw_recall_at_10_small_kbs')})"
                                 f" | {row.get('hnsw_paths')} |")  # fmt: skip
    s5 = results.get("scenario_5_ingestion")
    if s5:
        lines += ["", "## 5. Ingestion (local embedding model)", "",
                  f"{s5['documents']} Markdown documents, {s5['chunks']} chunks: **{s5['documents_per_s']} documents/s,"
                  f" {s5['chunks_per_s']} chunks/s**; the model's share of `document_index` time is"
                  f" {s5['ingest_model_share']} (outside the model: {s5['share_outside_model']})."]  # fmt: skip
    if results.get("soak"):
        lines += ["", "## Soak (bench/soak.py, with faults)", "", "```",
                  json.dumps(results["soak"], indent=1)[:3000], "```"]  # fmt: skip
    lines += ["", f"Machine load average (1, 5, 15 min) at start {results.get('load_average_at_start')}, at end"
              f" {results.get('load_average_at_end')}: other work shared these 2 cores."]  # fmt: skip
    if results.get("gaps"):
        lines += ["", "## Gaps", ""] + [f"- {gap}" for gap in results["gaps"]]
    return "\n".join(lines) + "\n"


def charts(results: dict, raw: dict | None, stem: str = "latest") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if raw is None:  # --replot: the samples behind the distributions are not kept in latest.json
        raw = {}

    def cdf(ax, values, label):
        if values:
            ordered = sorted(values)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)

    if "s1_floor_ttft" in raw:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        cdf(axes[0], raw["s1_floor_ttft"], "floor (simulator)")
        cdf(axes[0], raw["s1_parley_ttft"], "Parley websocket")
        axes[0].set(title="TTFT, one visitor", xlabel="ms", ylabel="share of answers")
        axes[0].legend()
        for label, values in raw.get("lags", []):
            cdf(axes[1], values, label)
        axes[1].set(title="Token delivery lag (simulator send → visitor)", xlabel="ms", xscale="log")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{stem}_latency.png", dpi=110)
        written.append(f"{stem}_latency.png")
        plt.close(fig)

    rounds = results.get("scenario_2_concurrency", {}).get("rounds", [])
    points = results.get("scenario_3_throughput", {}).get("points", [])
    if rounds or points:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        full = [r for r in rounds if r["asking"] == r["visitors_connected"]] or rounds
        xs = [r["asking"] for r in full]
        axes[0].plot(xs, [r["parley"]["ttft_ms"].get("p95") for r in full], "o-", label="Parley TTFT p95")
        axes[0].plot(xs, [r["floor"]["ttft_ms"].get("p95") for r in full], "o--", label="floor TTFT p95")
        axes[0].plot(xs, [r["parley"]["token_lag_ms"].get("p95") for r in full], "s-", label="Parley token lag p95")
        axes[0].set(title="Latency against answers at once", xlabel="answers at once", ylabel="ms", yscale="log")
        axes[0].legend(fontsize=8)
        # Scenario 3's steps and scenario 2's all-asking rounds, one curve ordered by answers at once.
        series = sorted(
            [*points, *({"answers_at_once": r["asking"], "parley_tokens_per_s": r["parley"]["tokens_per_s"],
                         "floor_tokens_per_s": r["floor"]["tokens_per_s"]} for r in full)],
            key=lambda pt: pt["answers_at_once"],
        )  # fmt: skip
        xs = [pt["answers_at_once"] for pt in series]
        axes[1].plot(xs, [pt["answers_at_once"] * lib.SIMULATOR_TOKENS_PER_S for pt in series], ":", label="offered")
        axes[1].plot(xs, [pt["floor_tokens_per_s"] for pt in series], "o--", label="floor (simulator)")
        axes[1].plot(xs, [pt["parley_tokens_per_s"] for pt in series], "o-", label="Parley (1 Daphne, 1 worker)")
        axes[1].set(title="Throughput against concurrency", xlabel="answers at once", ylabel="tokens/s",
                    xscale="log", yscale="log")  # fmt: skip
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{stem}_throughput.png", dpi=110)
        written.append(f"{stem}_throughput.png")
        plt.close(fig)
    return written


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    global ANSWER_TIMEOUT_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="scenario 1, 50 visitors all asking, and scenario 6 (about 6 minutes)"
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks in the bot's knowledge base")
    parser.add_argument("--pairs", type=int, default=None, help="floor/Parley pairs in scenario 1")
    parser.add_argument("--levels", type=int, nargs="+", default=None, help="visitors connected in scenario 2")
    parser.add_argument("--shares", type=float, nargs="+", default=None, help="shares asking at once")
    parser.add_argument("--throughput-steps", type=int, nargs="+", default=[5, 10, 20, 35, 50, 100])
    parser.add_argument("--retrieval-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--reuse-retrieval",
        action="store_true",
        help="read bench/results/retrieval_scale.json instead of running retrieval_scale.py",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["2", "3", "4", "5", "6"], help="scenarios to skip")
    parser.add_argument("--ingest-documents", type=int, default=30)
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=None,
        help="also run bench/soak.py for this long (full run default 3; 0 skips)",
    )
    parser.add_argument(
        "--scaling-configs",
        nargs="+",
        default=None,
        metavar="DxW",
        help="scenario 6's configurations as Daphne x worker processes, e.g. 1x1 2x2 (default: all of the mode's)",
    )
    parser.add_argument("--worker-concurrency", type=int, default=None, help="threads (default: most at once)")
    parser.add_argument("--logs", type=Path, default=None, help="copy the stack's logs to this directory")
    parser.add_argument("--replot", action="store_true", help="only redraw the throughput chart from latest.json")
    parser.add_argument("--answer-timeout", type=float, default=ANSWER_TIMEOUT_S, help="seconds per answer")
    args = parser.parse_args()
    if args.replot:
        print(charts(json.loads((RESULTS / "latest.json").read_text()), None))
        return
    ANSWER_TIMEOUT_S = args.answer_timeout
    # SIGTERM (timeout, make) must still stop the stack's servers: turn it into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    quick = args.quick
    pairs = args.pairs or (20 if quick else 100)
    levels = args.levels or ([50] if quick else [10, 50, 200, 500])
    shares = args.shares or ([1.0] if quick else [0.1, 0.5, 1.0])
    profile_at = None if quick else (200 if 200 in levels else max(levels))

    started = time.monotonic()
    results: dict = {
        "mode": "quick" if quick else "full",
        "command": " ".join([".venv/bin/python", "-m", "bench.run", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
        "simulator": {"ttft_ms": lib.SIMULATOR_TTFT_S * 1000, "tokens_per_s": lib.SIMULATOR_TOKENS_PER_S},
        "answer_tokens": {
            "scenario_1": TTFT_ANSWER_TOKENS,
            "scenario_2": ANSWER_TOKENS,
            "scenario_3": 100,
            "scenario_6_relay": RELAY_ANSWER_TOKENS,
        },
        "gaps": [],
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["raw_forward_pass_ms"] = raw_forward_pass_ms()
    log(f"raw embedding forward pass (one 16-token question, one thread): {results['raw_forward_pass_ms']}")
    raw: dict = {"lags": []}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as temporary:
        stack = lib.Stack(Path(temporary))
        try:
            worker_concurrency = max([8, *[lib.ceil_share(n, max(shares)) for n in levels]]
                                     + ([] if quick or "3" in args.skip else args.throughput_steps))  # fmt: skip
            worker_concurrency = args.worker_concurrency or worker_concurrency
            log(f"starting the stack ({args.chunks} chunks, worker concurrency {worker_concurrency})")
            stack.start(chunks=args.chunks, worker_concurrency=worker_concurrency, answer_tokens=TTFT_ANSWER_TOKENS)
            results["worker_concurrency"] = worker_concurrency
            results["chunks"] = args.chunks
            log(f"stack up in {time.monotonic() - started:.0f} s; scenario 1: {pairs} floor/Parley pairs")
            s1 = asyncio.run(scenario_ttft(stack, pairs))
            raw["s1_floor_ttft"], raw["s1_parley_ttft"] = s1["floor"]["_ttft"], s1["parley"]["_ttft"]
            results["scenario_1_ttft"] = s1
            log(f"  TTFT p50/p95 floor {s1['floor']['ttft_ms'].get('p50')}/{s1['floor']['ttft_ms'].get('p95')},"
                f" Parley {s1['parley']['ttft_ms'].get('p50')}/{s1['parley']['ttft_ms'].get('p95')}")  # fmt: skip
            results["answer_path_statements"] = answer_statements(stack)
            results["answer_path_cpu_ms"] = answer_cpu(stack)
            log(f"  CPU to save + answer one first question, in one process: {results['answer_path_cpu_ms']}")
            log(f"  database statements, saving + answering: {statements_line(results['answer_path_statements'])}")
            if "2" not in args.skip:
                log(f"scenario 2: {levels} visitors connected, {shares} asking at once")
                # py-spy's collapsed stacks go next to the logs (--logs) or to the temporary directory; the top
                # frames are summarised in latest.json.
                profile_dir = args.logs or Path(tempfile.gettempdir()) / "parley-bench-profiles"
                profile_dir.mkdir(parents=True, exist_ok=True)
                s2 = asyncio.run(scenario_concurrency(stack, levels, shares, profile_at, profile_dir))
                at_50 = [r for r in s2["rounds"] if r["asking"] == 50]
                if at_50:
                    s2["cpu_at_50"] = cpu_by_stage(at_50[-1], profile_dir / "stages_50", 50)
                results["scenario_2_concurrency"] = s2
                for r in s2["rounds"]:
                    if r["asking"] == r["visitors_connected"]:
                        raw["lags"].append((f"Parley, {r['asking']} at once", r["parley"]["_lags"]))
                if s2["rounds"]:
                    largest = s2["rounds"][-1]
                    raw["lags"].insert(0, (f"floor, {largest['asking']} at once", largest["floor"]["_lags"]))
            if not quick and "3" not in args.skip:
                log(f"scenario 3: throughput steps {args.throughput_steps}")
                results["scenario_3_throughput"] = asyncio.run(scenario_throughput(stack, args.throughput_steps))
            if "6" not in args.skip:
                configs = SCALING_CONFIGS_QUICK if quick else SCALING_CONFIGS
                if args.scaling_configs:
                    configs = [tuple(int(n) for n in config.split("x")) for config in args.scaling_configs]
                log(f"scenario 6: scaling with processes, (Daphne, workers) in {configs}")
                # From 10 answers at once: 50 and more, started in one burst, already passed 30 ms on 2 cores, and
                # the cell then had no figure within it to compare between configurations.
                steps = [10, 25, 50, 100] if quick else [10, 25, 50, 100, 150, 200, 300]
                relay_steps = [50, 100, 125, 150, 200] if quick else [50, 100, 125, 150, 200, 300]
                results["scenario_6_scaling"] = asyncio.run(
                    scenario_scaling(stack, configs, burst=100, steps=steps, relay_steps=relay_steps)
                )
            if not quick and "5" not in args.skip:
                log(f"scenario 5: ingesting {args.ingest_documents} documents")
                results["scenario_5_ingestion"] = scenario_ingestion(args.ingest_documents)
                log(f"  {results['scenario_5_ingestion']}")
        finally:
            stack.stop(keep_logs=args.logs)
    if not quick and "4" not in args.skip:
        log("scenario 4: retrieval alone")
        results["scenario_4_retrieval"] = scenario_retrieval(args.retrieval_sizes, args.reuse_retrieval)
        sizes_found = [k for k in results["scenario_4_retrieval"] if k.isdigit()]
        if not any(int(k) >= 1_000_000 for k in sizes_found):
            results["gaps"].append("retrieval at 1M chunks: not in bench/results/retrieval_scale.json "
                                   f"(sizes there: {sizes_found})")  # fmt: skip
    soak_minutes = args.soak_minutes if args.soak_minutes is not None else (0 if quick else 3)
    if not (lib.BASE_DIR / "bench" / "soak.py").exists():
        results["gaps"].append("bench/soak.py (200-visitor soak with faults) is not in the tree yet: not run")
    elif soak_minutes:
        results["soak"] = scenario_soak(soak_minutes)
    elif (RESULTS / "soak.json").exists():
        # Not run now: report the last soak, saying so (it takes minutes and is run on its own).
        results["soak"] = {"source": "bench/results/soak.json, from an earlier run (not run now)",
                           "report": json.loads((RESULTS / "soak.json").read_text())}  # fmt: skip
    results["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["headline"] = headline(results)
    results["targets"] = targets(results["headline"])
    results["finished"] = time.strftime("%Y-%m-%d %H:%M")
    results["wall_s"] = round(time.monotonic() - started, 1)
    clean = strip_private(results)
    # The headline keys at the top level as well, under the exact names other tools read.
    output = {**clean["headline"], **clean}
    stem = "quick" if quick else "latest"
    (RESULTS / f"{stem}.json").write_text(json.dumps(output, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(clean))
    written = charts(clean, raw, stem)
    log(f"wrote bench/results/{stem}.json, {stem}.md, {', '.join(written)} in {results['wall_s']} s")
    print(json.dumps(clean["headline"], indent=2))
    print(json.dumps(clean["targets"], indent=2))


if __name__ == "__main__":
    main()
