"""`manage.py up` on a fresh data directory: serves, answers websockets, stops cleanly, reuses its data."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psutil
import pytest
import websockets
from django.core.management import CommandError, call_command

from chatbot.settings import BASE_DIR
from devtools.stack import free_port

pytestmark = pytest.mark.slow


def _environment(data_dir, **settings: str) -> dict[str, str]:
    # As on a fresh laptop: no DEBUG, no SECRET_KEY (the test run's own are left out).
    leave_out = {"DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR", "DEBUG", "SECRET_KEY"}
    environment = {k: v for k, v in os.environ.items() if k not in leave_out}
    environment.update(PARLEY_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **settings)
    return environment


class _Up:
    """`manage.py up` in a child process, its output collected as it comes."""

    def __init__(self, data_dir, port, **settings: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(port), "--concurrency", "4"],
            cwd=BASE_DIR,
            env=_environment(data_dir, **settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for_line(self, pattern: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(re.search(pattern, line) for line in list(self.lines)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} in time:\n{''.join(self.lines)}")
            time.sleep(0.1)

    def stop(self) -> tuple[float, str]:
        """SIGTERM, then (seconds until it exited, everything it printed)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        took = time.monotonic() - started
        self._reader.join(timeout=5)
        return took, "".join(self.lines)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for_worker(base_url: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _status, body = _get(f"{base_url}/healthz")
            report = json.loads(body)
            if report["worker"] == "ok":
                return report
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("up did not become healthy in time")
        time.sleep(0.25)


def _processes_of(data_dir) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in cmdline or environ.get("PARLEY_DATA_DIR") == str(data_dir):
            found.append(process)
    return found


def _left_running(data_dir) -> list[psutil.Process]:
    """The processes of `up` on `data_dir` still running after it stopped (zombies do not run)."""
    return [p for p in _processes_of(data_dir) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def _echo(ws_url: str) -> dict:
    async with websockets.connect(ws_url, origin="http://127.0.0.1") as socket:
        await socket.send(json.dumps({"hello": "parley"}))
        return json.loads(await asyncio.wait_for(socket.recv(), 5))


def test_up_serves_the_app_and_stops_every_child(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    up = _Up(data_dir, port)
    try:
        report = _wait_for_worker(f"http://127.0.0.1:{port}")
        assert report["database"] == "ok" and report["redis"] == "ok"
        status, body = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"Parley" in body
        # SITE_URL unset: the snippets point where this `up` serves, not at port 8000.
        assert f"http://localhost:{port}/widget.js".encode() in body
        reply = asyncio.run(_echo(f"ws://127.0.0.1:{port}/ws/echo/"))
        assert reply == {"type": "echo", "payload": {"hello": "parley"}}
        children = psutil.Process(up.process.pid).children(recursive=True)
        assert len(children) >= 3  # web, worker, beat
    finally:
        took, output = up.stop()

    # SIGTERM, 5 s of grace for a worker mid-ingestion, then the embedded servers: under 20 s on a busy machine.
    assert took < 20, output
    assert up.process.returncode == 0, output
    assert "created the demo bot" in output
    assert f"dashboard: http://localhost:{port}/dashboard/" in output
    assert "no staff account yet: create one with `python manage.py createsuperuser`" in output
    assert "DEBUG is on for local development: serving on the loopback address 127.0.0.1" in output
    for line_prefix in ("web ", "worker ", "beat "):
        assert any(line.startswith(line_prefix) for line in output.splitlines()), output
    leftover = _left_running(data_dir)
    assert leftover == [], [p.cmdline() for p in leftover]
    assert not any(child.is_running() for child in children)

    # A second `up` on the same data directory reuses the data: the demo bot is not created again. This one runs as
    # in production (DEBUG=0): its pages still get their static files (collected by `up`), and signing uses the
    # key the first run kept in the data directory. It runs two worker processes, as a host with more cores would.
    up = _Up(data_dir, port, DEBUG="0", ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="0", CELERY_WORKER_PROCESSES="2")
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_for_worker(base_url)
        status, login = _get(f"{base_url}/dashboard/login/")
        assert status == 200, login[:2000]
        stylesheet = re.search(rb'href="(/static/parley/dashboard/dashboard\.[0-9a-f]+\.css)"', login)
        assert stylesheet, login[:2000]  # a hashed name, from the manifest
        assert _get(f"{base_url}{stylesheet.group(1).decode()}")[0] == 200
        children = psutil.Process(up.process.pid).children(recursive=True)
        workers = [child for child in children if "celery" in " ".join(child.cmdline()) and "worker" in child.cmdline()]
        assert len(workers) == 2, [child.cmdline() for child in children]
        # Each worker process takes the answer queue under a node name of its own.
        up.wait_for_line(r"^worker +\|.* ready\.$")
        up.wait_for_line(r"^worker-2 \|.*worker-2@\S+ ready\.$")
    finally:
        _, output = up.stop()
    assert "created the demo bot" not in output
    assert "DEBUG is off, as in production" in output
    assert up.process.returncode == 0, output
    leftover = _left_running(data_dir)
    assert leftover == [], [p.cmdline() for p in leftover]


def test_up_refuses_no_worker_processes():
    with pytest.raises(CommandError, match=r"^--workers and --concurrency must be at least 1$"):
        call_command("up", "--workers", "0")


def test_up_on_a_busy_port_says_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "up", "--port", str(port)],
            cwd=BASE_DIR,
            env=_environment(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"CommandError: port {port} on 127.0.0.1 is already in use (Address already in use); "
        "stop what is using it or pick another with --port"
    ]
    subprocess.run([sys.executable, "manage.py", "down"], cwd=BASE_DIR, env=_environment(tmp_path / "data"))
