"""Prometheus metrics: what the model costs and how fast answers start. Served at /metrics.

Answers are produced in worker processes and scraped from the web process, so when PROMETHEUS_MULTIPROC_DIR is
set (as `up` and compose do) every process writes its samples there and /metrics adds them up.
"""

from django.conf import settings
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)

ANSWERS = Counter("parley_answers_total", "Answers by outcome", ["bot", "outcome"])
TTFT_SECONDS = Histogram(
    "parley_time_to_first_token_seconds",
    "From the answer task starting to the first token from the model",
    ["bot"],
    buckets=_LATENCY_BUCKETS,
)
ADDED_SECONDS = Histogram(
    "parley_added_latency_seconds",
    "Time Parley spends before asking the model (loading, retrieval, prompt building)",
    ["bot"],
    buckets=_LATENCY_BUCKETS,
)
TOKENS = Counter("parley_tokens_total", "Prompt (in) and generated (out) tokens", ["bot", "direction"])
TGI_ERRORS = Counter("parley_model_server_errors_total", "Model server failures by kind", ["kind"])
RETRIEVAL_SECONDS = Histogram(
    "parley_retrieval_seconds", "Hybrid search, query embedding included", buckets=_LATENCY_BUCKETS
)


def metrics_text() -> bytes:
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(DEFAULT_REGISTRY)
