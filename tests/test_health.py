import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devtools.stack import free_port


@pytest.mark.django_db
def test_healthz_reports_each_service(client):
    response = client.get("/healthz")

    report = response.json()
    assert report["database"] == "ok"
    assert report["redis"] == "ok"
    assert report["worker"] == "no worker answered"
    assert report["tgi"] == "not configured"
    assert report["status"] == "degraded"
    assert response.status_code == 200


@pytest.mark.django_db
def test_healthz_says_when_the_model_server_is_unreachable(client, settings):
    settings.TGI_URL = f"http://127.0.0.1:{free_port()}"

    report = client.get("/healthz").json()

    assert report["tgi"] == "unreachable"
    assert report["status"] == "degraded"


def test_healthz_sees_a_running_worker(celery_worker, client):
    report = json.loads(client.get("/healthz").content)

    assert report["worker"] == "ok"


@pytest.mark.django_db
def test_the_home_page_says_what_this_is_and_links_to_the_dashboard(client):
    response = client.get("/")

    assert response.status_code == 200
    assert b"self-hosted Parley instance" in response.content
    assert b'href="/dashboard/"' in response.content


@pytest.mark.django_db
def test_healthz_asks_the_model_server_and_the_workers_once_for_many_calls(client, sim, settings):
    settings.HEALTHZ_CACHE_S = 30
    started = time.monotonic()
    reports = [client.get("/healthz").json() for _ in range(10)]
    took = time.monotonic() - started
    assert {report["tgi"] for report in reports} == {"ok"}
    assert [r["path"] for r in sim.requests if r["path"] in ("/health", "/v1/models")] == ["/health"]
    # With no worker running, each worker ping waits its whole 1 s timeout: ten uncached calls take 10 s or more.
    assert {report["worker"] for report in reports} == {"no worker answered"}
    assert took < 6, took


@pytest.mark.django_db
def test_healthz_checks_the_database_and_redis_on_every_call(client, settings):
    settings.HEALTHZ_CACHE_S = 30
    client.get("/healthz")
    with CaptureQueriesContext(connection) as queries:
        client.get("/healthz")
    assert any("SELECT 1" in query["sql"] for query in queries.captured_queries)
