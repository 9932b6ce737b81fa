"""Soak: many visitors chatting through real Daphne and a real Celery worker against the TGI simulator, with faults
injected at random (model errors, an unavailable or stalling model, worker restarts by SIGKILL).

    .venv/bin/python -m bench.soak [--minutes 10] [--visitors 200] [--json bench/results/soak.json]

Starts everything in a temporary directory (embedded PostgreSQL and Redis, the simulator in its own process, one
Daphne, one worker, and Celery beat as in production: its sweep ends the answers a killed worker left with nobody
watching). Each visitor behaves like the widget: hello with its token, asks, waits for `done` or `error`, thinks
1-6 s, asks again; after a dropped socket it reconnects, resumes from the history in `ready` (an answer that ended
meanwhile counts), and re-sends the unacknowledged message with the same client id. Reported: messages sent,
answered, failed with a clear error, lost (no ack, or no end within 60 s, or not saved exactly once: must be zero),
and the memory (RSS) growth of each process between warm-up and the end.
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from bench import answer_latency as setup
from devtools import stack
from devtools.stack import BASE_DIR

ORIGIN = "https://www.acme.test"
ANSWER_DEADLINE_S = 60
FAULTS = ["error_midstream", "unavailable_503", "generation_424", "stall", "worker_restart"]
ENV = {
    # As in production (and bench/lib.py): with DEBUG on, Django keeps the last 9,000 queries of every database
    # connection, which the soak's memory figures counted as growth.
    "DEBUG": "0",
    "SECRET_KEY": "soak-" + secrets.token_hex(16),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "0",
    "CHAT_CONNECTIONS_PER_IP": "100000",
    "CHAT_MESSAGES_PER_MINUTE_PER_IP": "1000000",
    "CHAT_MESSAGES_PER_MINUTE_PER_VISITOR": "1000",
    "CHAT_NEW_VISITORS_PER_MINUTE_PER_IP": "1000000",
    "CHAT_LEADS_PER_HOUR_PER_IP": "1000000",
    "CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP": "1000000",
    "TGI_TIMEOUT_S": "2",
    "LOG_LEVEL": "WARNING",
}


class Stats:
    def __init__(self) -> None:
        self.sent: dict[str, str] = {}  # client id -> visitor's conversation id
        self.outcomes: dict[str, str] = {}  # client id -> answered | failed | lost
        self.faults: list[tuple[float, str]] = []
        self.gave_up: dict[str, float] = {}  # client id -> when its visitor stopped waiting (time.time())


async def visitor(n: int, url: str, public_id: str, stats: Stats, until: float) -> None:
    from websockets.asyncio.client import connect

    ws_url = url.replace("http://", "ws://") + f"/ws/chat/{public_id}/"
    token = None
    socket = None
    conversation = None
    count = 0
    await asyncio.sleep(random.uniform(0, 5))
    while time.monotonic() < until:
        count += 1
        client_id = f"v{n}-m{count}"
        text = random.choice(["How do refunds work?", "When do you ship?", "Is there a warranty?", "Opening hours?"])
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        acked = ended = False
        acked_id = None
        history: list[dict] = []
        outcome = "lost"
        while time.monotonic() < deadline and not ended:
            try:
                if socket is None:
                    socket = await connect(ws_url, origin=ORIGIN, open_timeout=10)
                    await socket.send(json.dumps({"type": "hello", "protocol": 1, "visitor_token": token}))
                    while (ready := json.loads(await asyncio.wait_for(socket.recv(), 10)))["type"] != "ready":
                        pass
                    token, conversation = ready["visitor_token"], ready["conversation_id"]
                    history = ready["messages"]
                    # Like the widget, resume from the history: an answer that ended while the socket was down
                    # sends no `done` to the new socket.
                    if acked and (ending := answer_ended(history, acked_id)):
                        outcome, ended = ending, True
                        continue
                if not acked:
                    stats.sent[client_id] = conversation
                    await socket.send(json.dumps({"type": "message", "text": text, "client_id": client_id}))
                while not ended:
                    frame = json.loads(await asyncio.wait_for(socket.recv(), max(0.1, deadline - time.monotonic())))
                    if frame["type"] == "ack" and frame["client_id"] == client_id:
                        acked, acked_id = True, frame["message_id"]
                        # Sent again after a reconnect: saved (and maybe answered) before the socket dropped.
                        if ending := answer_ended(history, acked_id):
                            outcome, ended = ending, True
                    elif frame["type"] == "done" and acked and frame["message_id"] > acked_id:
                        outcome = "answered" if frame["status"] in ("complete", "retrieval_only") else "failed"
                        if outcome == "answered":
                            ended = True
                    elif frame["type"] == "error":
                        if frame["code"] in ("busy", "rate_limited", "server_error") and not acked:
                            await asyncio.sleep(2)
                            break  # send again
                        if acked:
                            outcome, ended = "failed", True
            except (TimeoutError, OSError, Exception):
                if socket is not None:
                    await socket.close()
                socket = None
                await asyncio.sleep(1)
        stats.outcomes[client_id] = outcome
        if outcome == "lost":
            stats.gave_up[client_id] = time.time()
        await asyncio.sleep(random.uniform(1, 6))
    if socket is not None:
        await socket.close()


def answer_ended(history: list[dict], visitor_message_id: int | None) -> str | None:
    """'answered' or 'failed' when `history` (a `ready` frame's messages) holds the bot's finished reply to the
    visitor's message; None while it streams or is not there."""
    ids = [message["id"] for message in history]
    if visitor_message_id not in ids:
        return None
    for message in history[ids.index(visitor_message_id) + 1 :]:
        if message["role"] == "bot":
            if message["status"] == "streaming":
                return None
            return "answered" if message["status"] in ("complete", "retrieval_only") else "failed"
    return None


def simulator_config(url: str, **config) -> None:
    request = urllib.request.Request(f"{url}/_simulator/config", data=json.dumps(config).encode(),
                                     headers={"content-type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=5).read()


async def inject_faults(sim_url: str, workers: list, data_dir: Path, stats: Stats, until: float, started: float):
    restarted = False
    await asyncio.sleep(15)  # after the memory baseline
    while time.monotonic() < until - 20:
        await asyncio.sleep(random.uniform(15, 30))
        fault = random.choice(FAULTS) if restarted else "worker_restart"
        stats.faults.append((round(time.monotonic() - started, 1), fault))
        print(f"[{time.monotonic() - started:6.1f}s] fault: {fault}", flush=True)
        if fault == "worker_restart":
            workers[-1].send_signal(signal.SIGKILL)
            workers[-1].wait(10)
            await asyncio.sleep(3)
            workers.append(await asyncio.to_thread(setup.start_worker, data_dir / f"worker{len(workers)}.log",
                                                   concurrency=50, TGI_URL=sim_url, **ENV))  # fmt: skip
            restarted = True
        else:
            config = {"fault": fault, "fail_first_n": 20, "fault_after_tokens": 5, "stall_s": 5}
            await asyncio.to_thread(simulator_config, sim_url, **config)
            await asyncio.sleep(random.uniform(5, 10))
            await asyncio.to_thread(simulator_config, sim_url, fault=None, fail_first_n=0)


def rss_mb(process) -> float:
    try:
        return psutil.Process(process.pid).memory_info().rss / 2**20
    except psutil.Error:
        return float("nan")


def socket_subscriptions() -> int:
    """How many sockets' channels Daphne is subscribed to in Redis: one per open socket, none once they close."""
    from django.conf import settings

    from chatbot.realtime.connections import sync_client

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return len(sync_client().pubsub_channels(f"{prefix}specific*"))


async def soak(args, bot, daphne_url: str, sim_url: str, workers: list, daphne, simulator, data_dir: Path) -> dict:
    stats = Stats()
    started = time.monotonic()
    until = started + args.minutes * 60
    warm = asyncio.create_task(asyncio.sleep(20))
    tasks = [asyncio.create_task(visitor(n, daphne_url, bot.public_id, stats, until)) for n in range(args.visitors)]
    faults = asyncio.create_task(inject_faults(sim_url, workers, data_dir, stats, until, started))
    await warm
    memory_start = {"daphne": rss_mb(daphne), "worker": rss_mb(workers[-1]), "simulator": rss_mb(simulator),
                    "this_process (visitors)": rss_mb(psutil.Process())}  # fmt: skip
    subscriptions_start = await asyncio.to_thread(socket_subscriptions)
    first_worker = workers[-1]
    await asyncio.gather(*tasks)
    await faults
    await asyncio.sleep(2)  # the last sockets' close reaches Daphne
    subscriptions_end = await asyncio.to_thread(socket_subscriptions)
    memory_end = {"daphne": rss_mb(daphne), "worker": rss_mb(workers[-1]), "simulator": rss_mb(simulator),
                  "this_process (visitors)": rss_mb(psutil.Process())}  # fmt: skip
    return {
        "stats": stats,
        "memory_start": memory_start,
        "memory_end": memory_end,
        "subscriptions": {"after_warmup": subscriptions_start, "after_every_visitor_left": subscriptions_end},
        "worker_replaced_after_warmup": first_worker is not workers[-1],
        "seconds": time.monotonic() - started,
    }


def check_saved(stats: Stats) -> dict[str, str]:
    """Each sent message saved exactly once, in its conversation, with an answer that is no longer streaming."""
    from chatbot.models import Message

    problems = {}
    saved = {m.client_id: m for m in Message.objects.filter(client_id__in=list(stats.sent))}
    counts: dict[str, int] = {}
    for client_id in Message.objects.filter(client_id__in=list(stats.sent)).values_list("client_id", flat=True):
        counts[client_id] = counts.get(client_id, 0) + 1
    for client_id, conversation_id in stats.sent.items():
        message = saved.get(client_id)
        if message is None:
            problems[client_id] = "not saved"
        elif counts[client_id] != 1 or message.conversation_id != conversation_id:
            problems[client_id] = "saved twice or in another conversation"
        elif Message.objects.filter(in_reply_to=message, status="streaming").exists():
            problems[client_id] = "answer still streaming"
    return problems


def lost_detail(client_id: str, stats: Stats) -> str:
    """What became of an answer its visitor stopped waiting for: how it ended, and when, from the database."""
    from chatbot.models import Message

    reply = Message.objects.filter(in_reply_to__client_id=client_id, role="bot").first()
    if reply is None:
        return "lost: no answer saved"
    asked = reply.created_at.timestamp()
    ended = f"{reply.finished_at.timestamp() - asked:.1f} s after the question" if reply.finished_at else "never"
    gave_up = stats.gave_up.get(client_id)
    waited = f"; the visitor gave up after {gave_up - asked:.1f} s" if gave_up else ""
    return f"lost: answer {reply.status} ({reply.finish_reason or reply.error_code or '-'}) {ended}{waited}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--json", type=Path, default=BASE_DIR / "bench" / "results" / "soak.json")
    parser.add_argument("--logs", type=Path, help="copy the processes' logs (Daphne, workers, beat) here at the end")
    args = parser.parse_args()
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as temporary:
        data_dir = Path(temporary)
        setup.start_services(data_dir)
        from chatbot.models import Bot
        from chatbot.ops import embedded
        from knowledge.services import source_add_faq, source_ingest

        processes: list = []
        workers: list = []
        try:
            bot = setup.bot_with_faqs(0)
            faqs = [("refunds", "Refunds take five business days."), ("shipping", "We ship daily."),
                    ("warranty", "Two years."), ("opening hours", "9 to 18, Monday to Friday.")]  # fmt: skip
            for topic, answer in faqs:
                source_ingest(source=source_add_faq(knowledge_base=bot.knowledge_base, question=topic, answer=answer))
            Bot.objects.filter(id=bot.id).update(allowed_origins=[ORIGIN])
            bot.refresh_from_db()
            simulator, sim_url = setup.start_simulator(data_dir)
            processes.append(simulator)
            server = stack.start_daphne(log_path=data_dir / "daphne.log", env={**os.environ, "TGI_URL": sim_url})
            daphne, daphne_url = server.process, server.url
            processes.append(daphne)
            workers.append(setup.start_worker(data_dir / "worker0.log", concurrency=50, TGI_URL=sim_url, **ENV))
            beat_log = open(data_dir / "beat.log", "w")  # noqa: SIM115 - lives as long as beat
            beat_command = ["celery", "-A", "chatbot", "beat", f"--schedule={data_dir / 'celerybeat-schedule'}"]
            beat = subprocess.Popen([sys.executable, "-m", *beat_command, "--loglevel=WARNING"], cwd=BASE_DIR,
                                    stdout=beat_log, stderr=subprocess.STDOUT)  # fmt: skip
            processes.append(beat)
            print(f"soak: {args.visitors} visitors for {args.minutes} min against {daphne_url}", flush=True)
            result = asyncio.run(soak(args, bot, daphne_url, sim_url, workers, daphne, simulator, data_dir))
            time.sleep(10)  # answers still finishing
            stats: Stats = result["stats"]
            problems = check_saved(stats)
            outcomes = list(stats.outcomes.values())
            lost = sorted(set(problems) | {c for c, o in stats.outcomes.items() if o == "lost"})
            report = {
                "config": {"minutes": args.minutes, "visitors": args.visitors, "faults": FAULTS},
                "seconds": round(result["seconds"], 1),
                "messages_sent": len(stats.sent),
                "answered": outcomes.count("answered"),
                "failed_with_clear_error": outcomes.count("failed"),
                "lost": len(lost),
                "lost_examples": {c: problems.get(c) or lost_detail(c, stats) for c in lost[:20]},
                "faults_injected": stats.faults,
                "worker_restarts": len(workers) - 1,
                # Each open socket holds one Redis subscription; one left after its socket closed is a leak.
                "redis_socket_subscriptions": result["subscriptions"],
                "memory_mb_after_warmup": {k: round(v, 1) for k, v in result["memory_start"].items()},
                "memory_mb_at_end": {k: round(v, 1) for k, v in result["memory_end"].items()},
                "memory_growth_mb": {
                    k: round(result["memory_end"][k] - result["memory_start"][k], 1) for k in result["memory_start"]
                },
                "note": "the worker's growth compares the worker running at the end with the one after warm-up; "
                "after a restart they are different processes",
            }
            print(json.dumps(report, indent=2), flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            if lost:
                sys.exit(1)
        finally:
            for process in [*workers, *processes]:
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
            from django.db import connections

            connections.close_all()
            embedded.stop_embedded_servers(data_dir=data_dir)
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in data_dir.glob("*.log"):
                    shutil.copy(log, args.logs / log.name)


if __name__ == "__main__":
    main()
