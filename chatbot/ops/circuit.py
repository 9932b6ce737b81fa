"""A circuit breaker in front of the model server, shared by every worker through Redis.

closed → (N answers in a row could not use the model) → open for a cool-down: answers go straight to
retrieval-only without a request → half-open: one answer may try (a probe); its success closes the circuit, its
failure opens it again. A Redis outage never blocks answers: the breaker then lets every request through.
"""

import logging
import time
from dataclasses import dataclass
from typing import Literal

import redis
from django.conf import settings

from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import circuit_key as _key

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]
PROBE_TTL_S = 60
# The ModelServerError kinds that say the model server is down or failing (not the request's fault).
FAILURE_KINDS = frozenset(
    {"unreachable", "timeout", "overloaded", "unavailable", "generation", "stream_error", "bad_response"}
)


def failure_threshold() -> int:
    return settings.TGI_CIRCUIT_FAILURES


def cooldown_s() -> float:
    return settings.TGI_CIRCUIT_COOLDOWN_S


def circuit_state(*, endpoint: str) -> CircuitState:
    try:
        opened_until = sync_client().get(_key(endpoint, "open_until"))
    except redis.RedisError:
        return "closed"
    if opened_until is None:
        return "closed"
    return "open" if float(opened_until) > time.time() else "half_open"


@dataclass(frozen=True)
class CircuitAdmission:
    """May an answer ask the model server now, and must its success clear the breaker's keys? When the circuit was
    closed with no failure counted as the answer started, its success leaves Redis alone: a failure counted while
    it streamed is cleared by the next answer that starts after it and succeeds."""

    allowed: bool
    clear_on_success: bool = True


# What an answer does when Redis cannot be asked: it may ask the model server, and tries to clear on success.
ADMITTED_WITHOUT_REDIS = CircuitAdmission(allowed=True)

# Read the state and claim the probe in one atomic step. Done as two round trips, a caller could read half-open,
# the probe could fail and reopen the circuit (freeing the probe), and the caller then claimed a second probe.
# 2: closed, nothing to clear on success; 1: allowed (closed with failures counted, or the probe); 0: not allowed.
_ALLOWS = """
local opened_until = redis.call('GET', KEYS[1])
if not opened_until then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    return 1
  end
  return 2
end
if tonumber(opened_until) > tonumber(ARGV[1]) then
  return 0
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
"""


def circuit_admission_queue(pipe: redis.client.Pipeline, *, endpoint: str) -> None:
    """Queue the breaker's admission of one answer on a pipeline (another check's round trip); read its reply with
    `circuit_admission_read`. In half-open state only one caller is allowed (the probe)."""
    keys = (_key(endpoint, "open_until"), _key(endpoint, "probe"), _key(endpoint, "failures"))
    pipe.eval(_ALLOWS, len(keys), *keys, repr(time.time()), PROBE_TTL_S)


def circuit_admission_read(reply: int) -> CircuitAdmission:
    return CircuitAdmission(allowed=bool(reply), clear_on_success=reply != 2)


def circuit_record_success(*, endpoint: str, admission: CircuitAdmission = ADMITTED_WITHOUT_REDIS) -> None:
    """The model server answered: close the circuit and forget the failures, unless the answer's `admission` says
    there was nothing to clear."""
    if not admission.clear_on_success:
        return
    try:
        sync_client().delete(_key(endpoint, "failures"), _key(endpoint, "open_until"), _key(endpoint, "probe"))
    except redis.RedisError as error:
        logger.warning("could not close the model server circuit: %s", error)


def circuit_record_failure(*, endpoint: str) -> CircuitState:
    """Count one answer that could not use the model server; returns the state after it."""
    client = sync_client()
    try:
        was = circuit_state(endpoint=endpoint)
        if was == "open":
            return was  # an answer that started before the circuit opened must not extend the cool-down
        failures = client.incr(_key(endpoint, "failures"))
        client.expire(_key(endpoint, "failures"), 3600)
        if was == "half_open" or failures >= failure_threshold():
            until = time.time() + cooldown_s()
            client.set(_key(endpoint, "open_until"), str(until), ex=int(cooldown_s()) + 3600)
            client.delete(_key(endpoint, "failures"), _key(endpoint, "probe"))
            logger.error("model server %s failed %s times in a row: circuit open for %ss", endpoint,
                         failures, cooldown_s())  # fmt: skip
            return "open"
    except redis.RedisError as error:
        logger.warning("could not count a model server failure: %s", error)
    return circuit_state(endpoint=endpoint)


def circuit_reset(*, endpoint: str) -> None:
    circuit_record_success(endpoint=endpoint)
