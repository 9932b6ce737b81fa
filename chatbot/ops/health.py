"""Reachability of the services Parley depends on, for /healthz and the compose health checks."""

import threading
import time
from collections.abc import Callable
from typing import TypedDict

from django.conf import settings
from django.db import connection

from chatbot.celery import app as celery_app
from chatbot.ops.circuit import circuit_state
from inference.client import model_server_health


class HealthReport(TypedDict):
    status: str
    database: str
    redis: str
    worker: str
    tgi: str
    # The model server circuit breaker (chatbot.ops.circuit): "closed", "open" (answers are retrieval-only) or
    # "half_open" (one answer is trying the model again).
    tgi_circuit: str


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
    # The model client knows how to ask TGI and plain OpenAI-compatible servers, with the API key.
    return model_server_health(settings.TGI_URL, api_key=settings.TGI_API_KEY or None)


_cache: dict[tuple, tuple[float, str]] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, compute: Callable[[], str]) -> str:
    """`compute()`, reused for HEALTHZ_CACHE_S in this process: a worker ping is broadcast to every worker and the
    model server is asked each time, so a /healthz polled (or flooded) from outside must not do either per call."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < settings.HEALTHZ_CACHE_S:
            return hit[1]
    value = compute()
    with _cache_lock:
        _cache[key] = (time.monotonic(), value)
    return value


def health_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def health_report() -> HealthReport:
    report = HealthReport(
        status="ok",
        # Cheap and local: always checked live.
        database=database_health(),
        redis=redis_health(),
        worker=_cached(("worker", settings.CELERY_BROKER_URL), worker_health),
        tgi=_cached(("tgi", settings.TGI_URL), tgi_health),
        tgi_circuit=circuit_state(endpoint=settings.TGI_URL) if settings.TGI_URL else "closed",
    )
    # The web tier can serve (retrieval-only, queued answers) without a worker or a model; not without these.
    if report["database"] != "ok" or report["redis"] != "ok":
        report["status"] = "error"
    elif report["worker"] != "ok" or report["tgi"] not in ("ok", "not configured") or report["tgi_circuit"] == "open":
        report["status"] = "degraded"
    return report
