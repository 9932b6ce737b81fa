"""DEBUG is off unless asked for, the signing key is never a published constant, and error pages never show
credentials: settings read in fresh processes, and a real Daphne asked for a host it does not serve."""

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from chatbot.settings import BASE_DIR
from devtools import stack
from devtools.pytest_plugin import subprocess_environment

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.SECRET_KEY]))"
)


def _environment(**overrides: str | None) -> dict[str, str]:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatbot.settings"}
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def _settings(**overrides: str | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=_environment(**overrides), capture_output=True, text=True
    )


def test_debug_is_off_when_nobody_turns_it_on(tmp_path):
    result = _settings(DEBUG=None, SECRET_KEY="k" * 50, PARLEY_DATA_DIR=str(tmp_path))
    assert json.loads(result.stdout.splitlines()[-1])[0] is False, result.stderr


def test_without_debug_a_missing_secret_key_stops_every_process(tmp_path):
    result = _settings(DEBUG=None, SECRET_KEY=None, PARLEY_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_development_key_is_random_per_data_directory_kept_private_and_reused(tmp_path):
    first = _settings(DEBUG="1", SECRET_KEY=None, PARLEY_DATA_DIR=str(tmp_path / "a"))
    again = _settings(DEBUG="1", SECRET_KEY=None, PARLEY_DATA_DIR=str(tmp_path / "a"))
    other = _settings(DEBUG="1", SECRET_KEY=None, PARLEY_DATA_DIR=str(tmp_path / "b"))
    keys = [json.loads(result.stdout.splitlines()[-1])[1] for result in (first, again, other)]
    assert keys[0] == keys[1] != keys[2] and len(keys[0]) >= 50
    assert stat.S_IMODE((tmp_path / "a" / "secret_key").stat().st_mode) == 0o600
    # Commands run later on the same data directory (createsuperuser on a laptop) sign with the same key.
    later = _settings(DEBUG=None, SECRET_KEY=None, PARLEY_DATA_DIR=str(tmp_path / "a"))
    assert json.loads(later.stdout.splitlines()[-1]) == [False, keys[0]]


def _get(url: str, *, host: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _daphne(tmp_path, **overrides: str | None) -> stack.ServerProcess:
    environment = subprocess_environment()
    environment.update(ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="0")
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return stack.start_daphne(log_path=tmp_path / "daphne.log", env=environment)


def _credentials() -> list[str]:
    """The values an error page must never show: every service address of this test run, with its password."""
    return [value for name in ("DATABASE_URL", "REDIS_URL") if (value := subprocess_environment()[name])]


@pytest.mark.django_db(transaction=True)
def test_a_foreign_host_gets_a_plain_error_without_debug_set(tmp_path):
    daphne = _daphne(tmp_path, DEBUG=None)
    try:
        status, body = _get(f"{daphne.url}/dashboard/", host="evil.example")
    finally:
        daphne.stop()
    assert status == 400
    assert "DATABASE_URL" not in body and "Traceback" not in body
    assert not [value for value in _credentials() if value in body]


@pytest.mark.django_db(transaction=True)
def test_a_developers_debug_page_hides_service_addresses_and_passwords(tmp_path):
    daphne = _daphne(tmp_path, DEBUG="1", REDIS_URL=subprocess_environment()["REDIS_URL"].replace("//", "//:hunter2@"))
    try:
        status, body = _get(f"{daphne.url}/dashboard/", host="evil.example")
    finally:
        daphne.stop()
    assert status == 400 and "DisallowedHost" in body  # Django's debug page, with its settings
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYERS", "CACHES"):
        assert name in body, name
    assert "hunter2" not in body
    assert not [value for value in _credentials() if value in body]
