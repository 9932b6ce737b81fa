"""Starting Parley's processes for tests and benchmarks: Daphne, a Celery worker, the TGI simulator, each as a real
process on a free port, returned once it serves. The caller gives the environment (which database, which Redis,
which settings) and the log file."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    def __init__(self, process: subprocess.Popen, *, url: str = "", log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _start(command: list[str], *, log_path: Path, env: dict[str, str], url: str = "") -> ServerProcess:
    log_file = open(log_path, "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env={"PYTHONUNBUFFERED": "1", **env}, stdout=log_file, stderr=subprocess.STDOUT
    )
    return ServerProcess(process, url=url, log_path=log_path)


def _wait(server: ServerProcess, ready, *, what: str, timeout_s: float = START_TIMEOUT_S) -> ServerProcess:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{what} did not start:\n{server.log()}")
        time.sleep(0.05)
    return server


def _answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.HTTPError:
        return True  # it answered, if only to say it is unhealthy
    except OSError:
        return False
    return True


def start_daphne(*, log_path: Path, env: dict[str, str]) -> ServerProcess:
    """Daphne serving Parley (HTTP and websockets) on 127.0.0.1, once /healthz answers."""
    port = free_port()
    server = _start(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "chatbot.asgi:application"],
        log_path=log_path,
        env=env,
        url=f"http://127.0.0.1:{port}",
    )
    return _wait(server, lambda: _answers_http(f"{server.url}/healthz"), what="Daphne")


def start_celery_worker(
    *, log_path: Path, env: dict[str, str], concurrency: int = 8, loglevel: str = "INFO"
) -> ServerProcess:
    """A `celery worker --pool=threads`, once it says it is ready (in its log at INFO, else once it answers a
    ping: this process must then be configured for the same Redis)."""
    server = _start(
        [
            sys.executable, "-m", "celery", "-A", "chatbot", "worker", "--pool=threads",
            f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", f"--loglevel={loglevel}",
        ],
        log_path=log_path,
        env={**env, "CELERY_WORKER_CONCURRENCY": str(concurrency)},
    )  # fmt: skip
    if loglevel.upper() in ("INFO", "DEBUG"):
        return _wait(server, lambda: "ready." in server.log(), what="The Celery worker")
    from chatbot.ops.health import worker_health

    return _wait(server, lambda: worker_health(timeout_s=0.5) == "ok", what="The Celery worker")


def start_simulator(
    *,
    log_path: Path,
    ttft_s: float = 0.02,
    tokens_per_s: float = 50.0,
    command: tuple[str, ...] = (sys.executable, "-m", "devtools.tgi_simulator"),
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """The TGI simulator in a process of its own, once /health answers. `command` runs another entry point taking
    the same flags (the benchmark's timed simulator)."""
    import os

    port = free_port()
    server = _start(
        [*command, "--port", str(port), "--ttft", str(ttft_s), "--tps", str(tokens_per_s)],
        log_path=log_path,
        env=env if env is not None else dict(os.environ),
        url=f"http://127.0.0.1:{port}",
    )
    return _wait(server, lambda: _answers_http(f"{server.url}/health"), what="The TGI simulator", timeout_s=30)
