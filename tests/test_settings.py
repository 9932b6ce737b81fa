import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatbot.settings import BASE_DIR, env_bool, env_int


def test_it_reads_booleans_and_rejects_garbage(monkeypatch):
    monkeypatch.setenv("PARLEY_FLAG", "yes")
    assert env_bool("PARLEY_FLAG", False) is True
    monkeypatch.setenv("PARLEY_FLAG", "0")
    assert env_bool("PARLEY_FLAG", True) is False
    monkeypatch.setenv("PARLEY_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PARLEY_FLAG must be a boolean"):
        env_bool("PARLEY_FLAG", False)


def test_it_reads_integers_and_rejects_garbage(monkeypatch):
    monkeypatch.delenv("PARLEY_NUMBER", raising=False)
    assert env_int("PARLEY_NUMBER", 7) == 7
    monkeypatch.setenv("PARLEY_NUMBER", "12")
    assert env_int("PARLEY_NUMBER", 7) == 12
    monkeypatch.setenv("PARLEY_NUMBER", "twelve")
    with pytest.raises(ImproperlyConfigured, match="PARLEY_NUMBER must be an integer"):
        env_int("PARLEY_NUMBER", 7)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=environment, capture_output=True, text=True
    )


def test_production_settings_pass_the_deploy_check():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="a-real-production-secret-" + "x" * 40,
        ALLOWED_HOSTS="chat.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={**environment, "DEBUG": "0", "PARLEY_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_model_name_defaults_to_what_tgi_accepts_and_is_read_from_the_environment():
    code = "from django.conf import settings; print(settings.MODEL_NAME)"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatbot.settings", "DEBUG": "1"}
    environment.pop("MODEL_NAME", None)
    read = [
        subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            cwd=BASE_DIR, env={**environment, **extra}, capture_output=True, text=True, check=True,
        ).stdout.strip()
        for extra in ({}, {"MODEL_NAME": "llama3.2:3b"})
    ]  # fmt: skip
    assert read == ["tgi", "llama3.2:3b"]
