"""Parley's pytest plugin (loaded with `-p devtools.pytest_plugin` from pyproject.toml).

It runs before pytest-django reads the settings, so it can start the embedded PostgreSQL and Redis once for the
whole run, in a data directory of the tests' own (`var/test`, or PARLEY_TEST_DATA_DIR), unless DATABASE_URL and
REDIS_URL name servers to use. It also provides fixtures for what crosses processes: a real Celery worker and a
real Daphne server, both pointed at the test database.
"""

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatbot.ops import embedded
from devtools import stack
from devtools.stack import BASE_DIR, ServerProcess

TEST_DATA_DIR = Path(os.environ.get("PARLEY_TEST_DATA_DIR") or BASE_DIR / "var" / "test").resolve()

os.environ["PARLEY_DATA_DIR"] = str(TEST_DATA_DIR)
# The servers tests start run as `make run` does on a laptop (DEBUG on: static files from the source folders), with
# a key of this run's own; production settings are tested as such (tests/security/test_production_settings.py).
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ["DJANGO_SETTINGS_MODULE"] = "chatbot.settings"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests never reach a real model server unless a test starts the simulator and says so.
os.environ["TGI_URL"] = ""
# Every test's visitors come from a handful of addresses (127.0.0.1 for the browser tests), in one Redis that outlives
# the run: the per-address limits on what visitors set off are lifted, except in the tests of those limits.
for _limit in (
    "CHAT_NEW_VISITORS_PER_MINUTE_PER_IP",
    "CHAT_LEADS_PER_HOUR_PER_IP",
    "CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP",
):
    os.environ.setdefault(_limit, "1000000")
# Tests make and change webhook subscriptions straight in the database and expect the next event to see them; ids
# come back with every test database. (tests/api/test_webhooks.py checks the cache itself.)
os.environ.setdefault("WEBHOOK_SUBSCRIPTIONS_CACHE_S", "0")
# Several test runs may share the embedded servers (a developer's and an editor's, pytest-xdist's workers): each
# gets its own database. A worker inherits the environment of the run that started it, name included: not kept.
if re.fullmatch(r"(test_parley_\d+)?", os.environ.get("PARLEY_TEST_DATABASE_NAME", "")):
    os.environ["PARLEY_TEST_DATABASE_NAME"] = f"test_parley_{os.getpid()}"
embedded.configure_environment()
_RUNS_FILE = TEST_DATA_DIR / ".pytest-runs"


def _runs_update(*, add: int | None = None, remove: int | None = None) -> dict[int, int]:
    """The test runs using the embedded servers (pid → their Redis database number), kept in a file next to them.

    Each run gets a Redis database of its own, so one run's Celery workers never answer another's control pings
    and channel-layer groups never mix."""
    with embedded._data_dir_lock(TEST_DATA_DIR):
        runs: dict[int, int] = {}
        if _RUNS_FILE.exists():
            for line in _RUNS_FILE.read_text().split():
                pid, _, database = line.partition(":")
                if database and embedded._pid_alive(int(pid)):
                    runs[int(pid)] = int(database)
        if add is not None and add not in runs:
            runs[add] = min(set(range(1, 16)) - set(runs.values()) or {1})
        if remove is not None:
            runs.pop(remove, None)
        _RUNS_FILE.write_text("\n".join(f"{pid}:{database}" for pid, database in sorted(runs.items())))
        return runs


_redis_database = _runs_update(add=os.getpid())[os.getpid()]
# The test process itself keeps Django's one connection per thread: its tests switch databases and wrap each test
# in a transaction on that connection. The servers it starts use the pool, as in production.
os.environ["DB_POOL"] = "0"
os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{_redis_database}"


def pytest_unconfigure(config):
    others = _runs_update(remove=os.getpid())
    # The last run out stops the servers, unless told to keep them for the next run.
    if not others and not os.environ.get("PARLEY_TEST_KEEP_SERVERS"):
        embedded.stop_embedded_servers(data_dir=TEST_DATA_DIR)


def test_database_url() -> str:
    """The URL of the database pytest-django created, for processes the tests start."""
    from django.db import connection

    params = connection.settings_dict
    host = params["HOST"]
    if host.startswith("/"):
        return f"postgresql://{params['USER']}@/{params['NAME']}?host={host}"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return f"postgresql://{params['USER']}{password}@{host}:{params['PORT'] or 5432}/{params['NAME']}"


def subprocess_environment(**overrides: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment["DATABASE_URL"] = test_database_url()
    environment["PYTHONUNBUFFERED"] = "1"
    environment["DB_POOL"] = "1"
    environment.update(overrides)
    return environment


def start_celery_worker(*, log_path: Path, concurrency: int = 8, **env: str) -> ServerProcess:
    """A Celery worker on the test database; tasks queued by earlier tests (whose data is gone) are purged first."""
    from chatbot.celery import app as celery_app

    celery_app.control.purge()
    return stack.start_celery_worker(log_path=log_path, env=subprocess_environment(**env), concurrency=concurrency)


def start_daphne(*, log_path: Path, **env: str) -> ServerProcess:
    """Daphne on the test database."""
    return stack.start_daphne(log_path=log_path, env=subprocess_environment(**env))


@pytest.fixture
def celery_worker(transactional_db, tmp_path) -> Iterator[ServerProcess]:
    """A real Celery worker process on the test database (tests using it see committed data only)."""
    worker = start_celery_worker(log_path=tmp_path / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def daphne_server(transactional_db, tmp_path) -> Iterator[ServerProcess]:
    """A real Daphne process serving Parley (HTTP and websockets) on the test database."""
    server = start_daphne(log_path=tmp_path / "daphne.log")
    yield server
    server.stop()


def _migrations_fingerprint() -> str:
    """Of every installed app's migrations, ours and third-party ones (a newly installed app brings its tables)."""
    from django.apps import apps

    digest = hashlib.sha256()
    for app in sorted(apps.get_app_configs(), key=lambda config: config.label):
        for path in sorted(Path(app.path).glob("migrations/*.py")):
            digest.update(f"{app.label}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    """The test database, copied from a migrated template database kept on the embedded server.

    Migrating from scratch takes seconds on every run; `CREATE DATABASE ... TEMPLATE` takes a fraction of one.
    The template is named after a fingerprint of every migration file, so a changed migration builds a new one.
    """
    from django.db import connection

    template = f"parley_template_{_migrations_fingerprint()}"
    test_name = connection.creation._get_test_db_name()
    original_name = connection.settings_dict["NAME"]
    with django_db_blocker.unblock():
        with embedded._data_dir_lock(TEST_DATA_DIR), connection._nodb_cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE 'parley\\_template\\_%%'")
            templates = {row[0] for row in cursor.fetchall()}
            if template not in templates:
                # Build it: migrate a database of that name once, then never connect to it again.
                connection.settings_dict["NAME"] = original_name
                connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
                built = connection.settings_dict["NAME"]
                connection.close()
                cursor.execute(f'ALTER DATABASE "{built}" RENAME TO "{template}"')
                for stale in templates:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{stale}"')
            cursor.execute(f'DROP DATABASE IF EXISTS "{test_name}"')
            cursor.execute(f'CREATE DATABASE "{test_name}" TEMPLATE "{template}"')
        from django.conf import settings as django_settings

        connection.close()
        connection.settings_dict["NAME"] = test_name
        django_settings.DATABASES["default"]["NAME"] = test_name
    yield
    with django_db_blocker.unblock():
        connection.close()
        connection.settings_dict["NAME"] = original_name
        django_settings.DATABASES["default"]["NAME"] = original_name
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{test_name}" WITH (FORCE)')
