import os
import shutil
import signal
import socket
import sys
import threading

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from chatbot.bots.services import bot_demo_documentation_sources, bot_ensure_demo
from chatbot.models import StaffMember
from chatbot.ops import embedded
from chatbot.ops.devmode import DEBUG_FOR_LOOPBACK
from chatbot.ops.supervisor import ProcessGroup


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CommandError(
                f"port {port} on {host} is already in use ({error.strerror}); stop what is using it "
                f"or pick another with --port"
            ) from None


def _site_url(*, host: str, port: int) -> str:
    if os.environ.get("SITE_URL"):
        return settings.SITE_URL
    local = host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "")
    return f"http://{'localhost' if local else host}:{port}"


def _staff_exists() -> bool:
    return get_user_model().objects.filter(is_superuser=True, is_active=True).exists() or StaffMember.objects.exists()


class Command(BaseCommand):
    help = "Start Parley: migrate, load the demo bot, then run the web server, a Celery worker and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument(
            "--concurrency", type=int, default=settings.CELERY_WORKER_CONCURRENCY, help="Threads per worker process."
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.CELERY_WORKER_PROCESSES,
            help="Celery worker processes (each runs --concurrency answers at once). One interpreter prepares the "
            "questions and streams the answers of a process: on more cores, more processes use them "
            "(docs/scaling.md).",
        )
        parser.add_argument("--no-beat", action="store_true", help="Do not run Celery beat (scheduled tasks).")

    def handle(self, *args, host: str, port: int, concurrency: int, workers: int, no_beat: bool, **options):
        if workers < 1 or concurrency < 1:
            raise CommandError("--workers and --concurrency must be at least 1")
        _check_port_free(host, port)
        site_url = _site_url(host=host, port=port)
        # Snippets, lead emails and the demo bot's allowed origin use SITE_URL: unless it was set, it is where this
        # `up` serves (--port or PORT), in this process and in its children.
        settings.SITE_URL = site_url
        stop_requested = threading.Event()

        def request_stop(signum, frame):
            stop_requested.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        group = ProcessGroup(output=self.stdout._out, env=self._child_environment())
        started_servers = set(embedded.started_here)
        try:
            group.log("parley", f"data directory {settings.PARLEY_DATA_DIR}")
            self._log_debug(group, host=host)
            call_command("migrate", interactive=False, verbosity=0)
            if not settings.DEBUG:
                # Without DEBUG, pages name their static files by content hash (the manifest collectstatic writes).
                call_command("collectstatic", interactive=False, verbosity=0)
                group.log("parley", f"collected the static files in {settings.STATIC_ROOT}")
            bot, created = bot_ensure_demo()
            if created:
                group.log("parley", f"created the demo bot '{bot.slug}' (public id {bot.public_id})")
            self._start_children(
                group, host=host, port=port, concurrency=concurrency, workers=workers, beat=not no_beat
            )
            if created:
                self._ingest_demo_documentation(group, bot)
            group.log("parley", f"serving on http://{host}:{port}/ (Ctrl-C stops everything)")
            group.log("parley", f"dashboard: {site_url}/dashboard/")
            if not _staff_exists():
                group.log(
                    "parley",
                    "no staff account yet: create one with `python manage.py createsuperuser` "
                    "(or add agents with `python manage.py createstaff`)",
                )
            while not stop_requested.wait(0.2):
                exited = group.first_exited()
                if exited is not None:
                    group.log("parley", f"{exited.name} exited with code {exited.process.returncode}; stopping")
                    raise CommandError(f"{exited.name} exited unexpectedly")
        finally:
            group.log("parley", "stopping")
            group.stop()
            if started_servers:
                stopped = embedded.stop_embedded_servers(data_dir=settings.PARLEY_DATA_DIR, only=started_servers)
                if stopped:
                    group.log("parley", f"stopped embedded {', '.join(stopped)}")
            group.log("parley", "stopped")

    def _log_debug(self, group: ProcessGroup, *, host: str) -> None:
        if not settings.DEBUG:
            group.log("parley", "DEBUG is off, as in production")
        elif os.environ.get(DEBUG_FOR_LOOPBACK):
            group.log(
                "parley",
                f"DEBUG is on for local development: serving on the loopback address {host} with DEBUG unset "
                "(set DEBUG=0 to run as in production)",
            )
        else:
            group.log("parley", f"DEBUG is on (DEBUG=1): debug pages show code and settings to anyone reaching {host}")

    def _child_environment(self) -> dict[str, str]:
        # The web process serves /metrics for every process: each writes its samples here (prometheus_client's
        # multiprocess mode), and the folder starts empty with each `up`.
        metrics_dir = settings.PARLEY_DATA_DIR / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        return {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1",
            "SITE_URL": settings.SITE_URL,
        }

    def _ingest_demo_documentation(self, group: ProcessGroup, bot) -> None:
        from knowledge.tasks import ingest_source

        sources = bot_demo_documentation_sources(bot=bot)
        for source in sources:
            ingest_source.delay(source.id)
        group.log("parley", f"queued {len(sources)} documentation files for the demo bot's knowledge base")

    def _start_children(
        self, group: ProcessGroup, *, host: str, port: int, concurrency: int, workers: int, beat: bool
    ) -> None:
        python = sys.executable
        # The worker's database pool is sized from it (settings: DB_POOL_MAX_SIZE).
        group.env["CELERY_WORKER_CONCURRENCY"] = str(concurrency)
        group.start("web", [python, "-m", "daphne", "-b", host, "-p", str(port), "chatbot.asgi:application"])
        for number in range(1, workers + 1):
            # The first keeps Celery's default node name; the others need names of their own for control commands.
            name = "worker" if number == 1 else f"worker-{number}"
            node = [] if number == 1 else [f"--hostname={name}@%h"]
            group.start(
                name,
                [
                    python, "-m", "celery", "-A", "chatbot", "worker",
                    f"--pool={settings.CELERY_WORKER_POOL}", f"--concurrency={concurrency}",
                    "--without-gossip", "--without-mingle", "--loglevel=INFO", *node,
                ],
            )  # fmt: skip
        if beat:
            schedule = settings.PARLEY_DATA_DIR / "celerybeat-schedule"
            group.start(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "chatbot",
                    "beat",
                    "--loglevel=INFO",
                    f"--schedule={schedule}",
                ],
            )
