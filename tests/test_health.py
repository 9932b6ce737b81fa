import json

import pytest

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
