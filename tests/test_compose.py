"""compose.yaml cannot run here (no Docker engine), so check that it is wired the way the app reads it."""

import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from chatbot.settings import BASE_DIR

REQUIRED_SERVICES = {"web", "worker", "postgres", "redis", "tgi", "tei", "proxy"}
APP_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "TGI_URL",
    "EMBEDDING_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((BASE_DIR / "compose.yaml").read_text())


def _variables_the_app_reads() -> set[str]:
    names = set()
    for path in (BASE_DIR / "chatbot").rglob("*.py"):
        source = path.read_text()
        names |= set(re.findall(r'env_(?:str|bool|int|float|list)\("([A-Z_]+)"', source))
        names |= set(re.findall(r'os\.environ(?:\.get)?[\(\[]"([A-Z_]+)"', source))
    return names


def test_it_has_every_production_service(compose):
    assert set(compose["services"]) >= REQUIRED_SERVICES


def test_app_services_get_every_variable_the_app_needs(compose):
    for name in ("web", "worker", "beat"):
        environment = compose["services"][name]["environment"]
        assert set(environment) >= APP_VARIABLES, name
        assert environment["DEBUG"] == "0"


def test_every_variable_given_to_the_app_is_one_it_reads(compose):
    read = _variables_the_app_reads()
    assert set(compose["services"]["web"]["environment"]) <= read


def test_service_addresses_point_at_services_that_exist(compose):
    environment = compose["services"]["web"]["environment"]
    for variable in ("DATABASE_URL", "REDIS_URL", "TGI_URL", "EMBEDDING_URL"):
        host = urlparse(environment[variable].replace("${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", "x")).hostname
        assert host in compose["services"], (variable, host)


def test_the_model_server_gets_a_gpu_a_token_from_the_environment_and_a_weights_volume(compose):
    tgi = compose["services"]["tgi"]
    devices = tgi["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert tgi["environment"]["HF_TOKEN"].startswith("${HF_TOKEN")
    assert any(volume.endswith(":/data") for volume in tgi["volumes"])


def test_the_proxy_balances_over_every_web_replica():
    caddyfile = (BASE_DIR / "deploy" / "Caddyfile").read_text()
    assert "dynamic a web 8000" in caddyfile


def test_web_is_health_checked_on_healthz(compose):
    assert "/healthz" in " ".join(compose["services"]["web"]["healthcheck"]["test"])


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker client is not installed")
def test_docker_compose_parses_it():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"],
        cwd=BASE_DIR,
        env={"SECRET_KEY": "x", "POSTGRES_PASSWORD": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_runs_with_debug_off_whatever_starts_it():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^ENV .*\bDEBUG=0\b", dockerfile, flags=re.M)


def test_the_images_static_files_are_where_the_app_looks_for_them_at_run_time(compose):
    # Collected at build time into STATIC_ROOT; a folder under the data volume (PARLEY_DATA_DIR) would be hidden by it.
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    static_root = re.search(r"^ENV STATIC_ROOT=(\S+)", dockerfile, flags=re.M)
    assert static_root and dockerfile.index(static_root.group(0)) < dockerfile.index("collectstatic")
    data_dir = compose["services"]["web"]["environment"]["PARLEY_DATA_DIR"]
    assert not static_root.group(1).startswith(data_dir.rstrip("/") + "/")
    assert "STATIC_ROOT" not in compose["services"]["web"]["environment"]
