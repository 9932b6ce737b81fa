"""Reachability of the services Parley depends on, for /healthz and the compose health checks."""

from typing import TypedDict

import httpx
from django.conf import settings
from django.db import connection

from chatbot.celery import app as celery_app


class HealthReport(TypedDict):
    status: str
    database: str
    redis: str
    worker: str
    tgi: str


def database_health() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"


def redis_health() -> str:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"


def worker_health(*, timeout_s: float = 1.0) -> str:
    try:
        replies = celery_app.control.ping(timeout=timeout_s, limit=1)
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok" if replies else "no worker answered"


def tgi_health() -> str:
    if not settings.TGI_URL:
        return "not configured"
    try:
        response = httpx.get(f"{settings.TGI_URL}/health", timeout=2.0)
    except httpx.HTTPError:
        return "unreachable"
    return "ok" if response.status_code == 200 else f"unhealthy (HTTP {response.status_code})"


def health_report() -> HealthReport:
    report = HealthReport(
        status="ok",
        database=database_health(),
        redis=redis_health(),
        worker=worker_health(),
        tgi=tgi_health(),
    )
    # The web tier can serve (retrieval-only, queued answers) without a worker or a model; not without these.
    if report["database"] != "ok" or report["redis"] != "ok":
        report["status"] = "error"
    elif report["worker"] != "ok" or report["tgi"] not in ("ok", "not configured"):
        report["status"] = "degraded"
    return report
