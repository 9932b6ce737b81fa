"""Answer latency and relay throughput, end to end through a real Celery worker.

    .venv/bin/python -m bench.answer_latency [--sequential 50] [--concurrency 50] [--tokens 200] [--json out.json]

Starts everything it needs in a temporary directory: embedded PostgreSQL and Redis, a bot with a few hundred FAQ
chunks, the TGI simulator in a process of its own (20 ms to the first token, then 50 tokens a second), and one
`celery worker --pool=threads` process. This process plays the Daphne side: it listens on each conversation's
channel-layer group, one channel per conversation, and timestamps every event as it arrives.

What it measures (time.monotonic() is CLOCK_MONOTONIC, the same clock in every process on the host):
(a) added time to first token, over --sequential answers one after another: from just before `message_receive`
    (what the chat consumer calls) to the first chat.token at the listener, minus the simulator's 20 ms. It includes
    queueing the task, the worker picking it up, loading the conversation, retrieval (query embedding and hybrid
    search over the FAQ chunks), building the prompt, the HTTP request and the relay through Redis. Also given
    from the chat.typing event (sent when the task starts) to the first chat.token, minus 20 ms.
(b) tokens a second one worker process relays across --concurrency answers at once, each --tokens tokens long,
    and whether every answer arrived whole and in order (the concatenated chat.token texts equal the scripted
    answer and chat.done's text).
(c) token delivery lag during (b): the simulator records when it sent each token (--timing); a token's lag is the
    listener's arrival time of the event that completes it minus that send time. It includes the worker reading
    the stream, the output guard, the coalescing wait (up to 20 ms for text that arrives while an event was just
    sent) and Redis.
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from devtools import stack

SIMULATOR_TTFT_S = 0.02
SIMULATOR_TOKENS_PER_S = 50
TARGETS = {"added_ttft_p50_ms": 60, "added_ttft_p95_ms": 150, "lag_p95_ms": 30}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.50), 2),
        "p95": round(percentile(values, 0.95), 2),
        "max": round(max(values), 2),
        "mean": round(statistics.fmean(values), 2),
    }


# --- set-up ----------------------------------------------------------------------------------------------------


def start_services(data_dir: Path) -> None:
    os.environ["PARLEY_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatbot.settings"
    # DEBUG is off by default, and then settings need a key: a throwaway one for this run.
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(16))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["TGI_URL"] = ""
    os.environ["LOG_LEVEL"] = "WARNING"
    from chatbot.ops import embedded

    embedded.configure_environment()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bot_with_faqs(count: int):
    from chatbot.bots.services import bot_create
    from knowledge.services import source_add_faq, source_ingest

    bot = bot_create(slug="bench", name="Bench", persona="You are the support assistant of a hardware shop.")
    topics = ["shipping", "refunds", "warranty", "invoices", "opening hours", "returns", "gift cards", "repairs"]
    for n in range(count):
        topic = topics[n % len(topics)]
        source = source_add_faq(
            knowledge_base=bot.knowledge_base,
            question=f"Question {n} about {topic}: how does {topic} work for order type {n}?",
            answer=f"For order type {n}, {topic} works like this: contact us with your order number {1000 + n}, "
            f"we answer within {n % 5 + 1} business days, and {topic} costs nothing for members.",
        )
        source_ingest(source=source)
    return bot


def start_worker(log_path: Path, *, concurrency: int, **env: str) -> subprocess.Popen:
    """A `celery worker --pool=threads` on the benchmark's database and Redis (this process's environment)."""
    worker = stack.start_celery_worker(
        log_path=log_path, env={**os.environ, **env}, concurrency=concurrency, loglevel="WARNING"
    )
    return worker.process


def start_simulator(
    log_dir: Path, *, ttft_s: float = SIMULATOR_TTFT_S, tokens_per_s: float = SIMULATOR_TOKENS_PER_S
) -> tuple[subprocess.Popen, str]:
    """The TGI simulator in a process of its own, recording when each token leaves (--timing)."""
    simulator = stack.start_simulator(
        log_path=log_dir / "simulator.log",
        ttft_s=ttft_s,
        tokens_per_s=tokens_per_s,
        command=(sys.executable, "-m", "devtools.tgi_simulator", "--timing"),
    )
    return simulator.process, simulator.url


def simulator_send_times(url: str, marker: str) -> dict[str, list[float]]:
    """For each generation request whose last user turn holds `marker` followed by a number, that number's tokens'
    send times (the simulator runs with --timing)."""
    with urllib.request.urlopen(f"{url}/_simulator/requests", timeout=30) as response:
        records = json.loads(response.read())
    found = {}
    for record in records:
        messages = (record.get("body") or {}).get("messages") or []
        text = messages[-1].get("content", "") if messages else ""
        if marker in text and record.get("sent_at"):
            found[text.split(marker, 1)[1].split("?", 1)[0].strip()] = record["sent_at"]
    return found


def token_lags_ms(frames: list[tuple[float, str]], sent_at: list[float]) -> tuple[list[float], int]:
    """Per model token: receive time of the frame that completes it minus the simulator's send time. Returns
    (lags, tokens never received)."""
    from devtools.tgi_simulator import simulated_tokens

    received = "".join(text for _, text in frames)
    ends = [stop for _, _, stop in simulated_tokens(received)]
    frame_ends, total = [], 0
    for at, text in frames:
        total += len(text)
        frame_ends.append((total, at))
    lags, index = [], 0
    for token_index, end in enumerate(ends[: len(sent_at)]):
        while index < len(frame_ends) and frame_ends[index][0] < end:
            index += 1
        if index == len(frame_ends):
            break
        lags.append((frame_ends[index][1] - sent_at[token_index]) * 1000)
    return lags, max(0, len(sent_at) - len(lags))


def simulator_script(url: str, text: str) -> None:
    request = urllib.request.Request(
        f"{url}/_simulator/config",
        data=json.dumps({"script_text": text}).encode(),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).read()


# --- listening -------------------------------------------------------------------------------------------------


class Listener:
    """One channel per conversation on one event loop, like a Daphne process with one widget per conversation."""

    def __init__(self) -> None:
        from channels.layers import get_channel_layer

        self.layer = get_channel_layer()
        self.events: dict[str, list[tuple[float, dict]]] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []

    async def join(self, group: str) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(group, channel)
        self.events[group] = []
        self._done[group] = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._receive(group, channel)))

    async def _receive(self, group: str, channel: str) -> None:
        while True:
            event = await self.layer.receive(channel)
            self.events[group].append((time.monotonic(), event))
            if event["type"] == "chat.done":
                self._done[group].set()
                await self.layer.group_discard(group, channel)
                return

    async def wait(self, groups: list[str], timeout_s: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(self._done[group].wait() for group in groups)), timeout_s)


async def ask(conversation, text: str):
    from asgiref.sync import sync_to_async

    from chatbot.chat.conversations import message_receive

    _, message = await sync_to_async(message_receive)(conversation=conversation, text=text)
    return message


async def sequential_answers(bot, count: int) -> dict:
    from asgiref.sync import sync_to_async

    from chatbot.chat.conversations import conversation_resume_or_start

    listener = Listener()
    from_receive, from_typing = [], []
    for n in range(count):
        conversation = await sync_to_async(conversation_resume_or_start)(bot=bot, visitor_id=f"seq-{n}")
        await listener.join(conversation.group_name)
        asked_at = time.monotonic()
        await ask(conversation, f"How does shipping work for order type {n}?")
        await listener.wait([conversation.group_name], timeout_s=60)
        events = listener.events[conversation.group_name]
        typing_at = next(at for at, event in events if event["type"] == "chat.typing")
        first_token_at = next(at for at, event in events if event["type"] == "chat.token")
        from_receive.append((first_token_at - asked_at - SIMULATOR_TTFT_S) * 1000)
        from_typing.append((first_token_at - typing_at - SIMULATOR_TTFT_S) * 1000)
    return {"from_message_receive_ms": summary(from_receive), "from_task_start_ms": summary(from_typing)}


def listen_in_process(groups: list[str], ready, results) -> None:
    """A listener process (think: one Daphne process) for some of the conversations of (b)."""
    import django

    django.setup()

    async def listen() -> dict:
        listener = Listener()
        for group in groups:
            await listener.join(group)
        ready.set()
        with contextlib.suppress(TimeoutError):  # what did not arrive counts as lost
            await listener.wait(groups, timeout_s=120)
        return listener.events

    results.put(asyncio.run(listen()))


def concurrent_answers(
    bot, concurrency: int, expected: str, simulated_tokens: int, listeners: int, simulator_url: str
) -> dict:
    from chatbot.chat.conversations import conversation_resume_or_start, message_receive

    conversations = [conversation_resume_or_start(bot=bot, visitor_id=f"con-{n}") for n in range(concurrency)]
    groups = [conversation.group_name for conversation in conversations]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = []
    for n in range(listeners):
        ready = context.Event()
        process = context.Process(target=listen_in_process, args=(groups[n::listeners], ready, results))
        process.start()
        processes.append((process, ready))
    for _, ready in processes:
        ready.wait(120)
    started = time.monotonic()
    for n, conversation in enumerate(conversations):
        message_receive(conversation=conversation, text=f"How do refunds work for order type {n}?")
    received: dict[str, list] = {}
    for _ in processes:
        received.update(results.get(timeout=300))
    for process, _ in processes:
        process.join(30)
    send_times = simulator_send_times(simulator_url, "order type ")
    lags, whole, first_token, last_done = [], 0, [], 0.0
    for n, group in enumerate(groups):
        events = received.get(group, [])
        tokens = [(at, event) for at, event in events if event["type"] == "chat.token"]
        done = [(at, event) for at, event in events if event["type"] == "chat.done"]
        text = "".join(event["text"] for _, event in tokens)
        if done and text == expected == done[0][1]["text"] and done[0][1]["status"] == "complete":
            whole += 1
        lags += token_lags_ms([(at, event["text"]) for at, event in tokens], send_times.get(str(n), []))[0]
        if tokens:
            first_token.append(tokens[0][0])
        if done:
            last_done = max(last_done, done[0][0])
    relayed_s = last_done - min(first_token) if first_token else float("nan")
    return {
        "answers": concurrency,
        "answers_whole_and_in_order": whole,
        "tokens_per_answer": simulated_tokens,
        "tokens_relayed_per_s": round(whole * simulated_tokens / relayed_s, 1),
        "offered_tokens_per_s": concurrency * SIMULATOR_TOKENS_PER_S,
        "listener_processes": listeners,
        "wall_s": round(time.monotonic() - started, 2),
        "events": sum(len(events) for events in received.values()),
        "lag_ms": summary(lags) if lags else None,
    }


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", type=int, default=50, help="answers one after another, for (a)")
    parser.add_argument("--concurrency", type=int, default=50, help="answers at once, for (b) and (c)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer in (b) and (c)")
    parser.add_argument("--listeners", type=int, default=5, help="listener processes (Daphne stand-ins) in (b)")
    parser.add_argument("--faqs", type=int, default=300, help="FAQ entries in the knowledge base")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", type=Path, help="py-spy the worker during (b) into this file (collapsed stacks)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as temporary:
        data_dir = Path(temporary)
        started = time.monotonic()
        start_services(data_dir)
        from chatbot.ops import embedded
        from devtools.tgi_simulator import simulated_tokens

        simulator = worker = None
        try:
            bot = bot_with_faqs(args.faqs)
            print(f"set-up: {args.faqs} FAQ entries indexed in {time.monotonic() - started:.1f} s", flush=True)
            simulator, url = start_simulator(data_dir)
            worker = start_worker(data_dir / "worker.log", concurrency=max(args.concurrency, 8), TGI_URL=url)
            # One answer first, so that loading the embedding model in the worker is not measured.
            asyncio.run(sequential_answers(bot, 1))

            results: dict = {
                "config": {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()}
            }
            results["added_ttft"] = asyncio.run(sequential_answers(bot, args.sequential))
            print("(a) added TTFT:", json.dumps(results["added_ttft"]), flush=True)

            words = " ".join(f"t{n}" for n in range(args.tokens))
            pieces = [piece for piece, _, _ in simulated_tokens(words)]
            script = "".join(pieces[: args.tokens])
            simulator_script(url, script)
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker.pid), "--format",
                     "raw", "--output", str(args.profile), "--rate", "200", "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1)
            results["concurrent"] = concurrent_answers(bot, args.concurrency, script, args.tokens, args.listeners, url)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            print("(b, c) concurrent:", json.dumps(results["concurrent"]), flush=True)

            added = results["added_ttft"]["from_message_receive_ms"]
            concurrent = results["concurrent"]
            results["targets_met"] = {
                "added_ttft_p50": added["p50"] < TARGETS["added_ttft_p50_ms"],
                "added_ttft_p95": added["p95"] < TARGETS["added_ttft_p95_ms"],
                "no_loss_in_order": concurrent["answers_whole_and_in_order"] == concurrent["answers"],
                "lag_p95": bool(concurrent["lag_ms"]) and concurrent["lag_ms"]["p95"] < TARGETS["lag_p95_ms"],
            }
            print("targets met:", json.dumps(results["targets_met"]), flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
        except BaseException:
            if worker is not None:
                print((data_dir / "worker.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
            if simulator is not None:
                simulator.terminate()
                simulator.wait(10)
            from django.db import connections

            connections.close_all()
            embedded.stop_embedded_servers(data_dir=data_dir)


if __name__ == "__main__":
    main()
