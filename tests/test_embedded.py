import os
import subprocess
import sys

import pytest

from chatbot.settings import BASE_DIR

pytestmark = pytest.mark.slow


def _manage(data_dir, *args):
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR"}}
    environment["PARLEY_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_any_command_starts_or_finds_the_embedded_servers_and_down_stops_them(tmp_path):
    data_dir = tmp_path / "data"

    migrated = _manage(data_dir, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    assert (data_dir / "postgres" / "PG_VERSION").exists()

    # The next command finds the same servers and the same data.
    created = _manage(
        data_dir, "shell", "-c", "from chatbot.bots.services import bot_create; bot_create(slug='x', name='X')"
    )
    assert created.returncode == 0, created.stderr
    counted = _manage(data_dir, "shell", "-c", "from chatbot.models import Bot; print(Bot.objects.count())")
    assert counted.stdout.strip().splitlines()[-1] == "1", counted.stderr

    down = _manage(data_dir, "down")
    assert "stopped embedded redis, postgres" in down.stdout
    assert "no embedded server running" in _manage(data_dir, "down").stdout

    # Data outlives the servers.
    counted = _manage(data_dir, "shell", "-c", "from chatbot.models import Bot; print(Bot.objects.count())")
    assert counted.stdout.strip().splitlines()[-1] == "1", counted.stderr
    _manage(data_dir, "down")
