"""The circuit breaker: its half-open state lets exactly one answer try the model server, however many ask at once,
and what an answer's success clears."""

import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.test import override_settings

from chatbot.ops import circuit
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import circuit_key

CALLERS = 8
ROUNDS = 100


def admission(endpoint: str) -> circuit.CircuitAdmission:
    """As an answer reads it, on the pipeline of its other checks before the model request."""
    pipe = sync_client().pipeline(transaction=False)
    circuit.circuit_admission_queue(pipe, endpoint=endpoint)
    (reply,) = pipe.execute()
    return circuit.circuit_admission_read(reply)


def _half_open(endpoint: str) -> None:
    """As after a cool-down: the circuit was opened and its time is up."""
    sync_client().set(circuit_key(endpoint, "open_until"), str(time.time() - 1))


@override_settings(TGI_CIRCUIT_FAILURES=3, TGI_CIRCUIT_COOLDOWN_S=60)
def test_a_failing_probe_reopens_the_circuit_before_any_other_caller_can_claim_a_second_probe():
    endpoint = f"http://model-server-{uuid.uuid4().hex}"

    def ask(barrier: threading.Barrier) -> bool:
        barrier.wait()
        allowed = admission(endpoint).allowed
        if allowed:  # the probe fails at once, as a dead model server's does
            circuit.circuit_record_failure(endpoint=endpoint)
        return allowed

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between the Redis calls, as busy worker threads do
    try:
        with ThreadPoolExecutor(CALLERS) as pool:
            for _ in range(ROUNDS):
                _half_open(endpoint)
                barrier = threading.Barrier(CALLERS)
                answers = list(pool.map(ask, [barrier] * CALLERS))
                assert answers.count(True) == 1
                assert circuit.circuit_state(endpoint=endpoint) == "open"
    finally:
        sys.setswitchinterval(switch_interval)
        circuit.circuit_reset(endpoint=endpoint)


def test_the_probe_slot_is_free_again_after_the_next_cool_down():
    endpoint = f"http://model-server-{uuid.uuid4().hex}"
    try:
        _half_open(endpoint)
        assert admission(endpoint).allowed
        assert not admission(endpoint).allowed, "one probe at a time"
        circuit.circuit_record_failure(endpoint=endpoint)
        assert not admission(endpoint).allowed, "open again"
        _half_open(endpoint)
        assert admission(endpoint).allowed
        circuit.circuit_record_success(endpoint=endpoint)
        assert circuit.circuit_state(endpoint=endpoint) == "closed"
        assert all(admission(endpoint).allowed for _ in range(3))
    finally:
        circuit.circuit_reset(endpoint=endpoint)


@override_settings(TGI_CIRCUIT_FAILURES=3)
def test_a_success_clears_the_failures_counted_before_its_answer_started_and_leaves_a_clean_circuit_alone():
    endpoint = f"http://model-server-{uuid.uuid4().hex}"
    failures = circuit_key(endpoint, "failures")
    try:
        started_clean = admission(endpoint)
        assert started_clean == circuit.CircuitAdmission(allowed=True, clear_on_success=False)

        circuit.circuit_record_failure(endpoint=endpoint)  # another answer failed while this one streamed
        circuit.circuit_record_success(endpoint=endpoint, admission=started_clean)
        assert sync_client().get(failures) == b"1", "a success that began before the failure does not clear it"

        started_after = admission(endpoint)
        assert started_after == circuit.CircuitAdmission(allowed=True, clear_on_success=True)
        circuit.circuit_record_success(endpoint=endpoint, admission=started_after)
        assert sync_client().exists(failures) == 0
        assert circuit.circuit_state(endpoint=endpoint) == "closed"
    finally:
        circuit.circuit_reset(endpoint=endpoint)


def test_an_open_circuit_admits_no_answer_and_the_probe_must_clear_on_success():
    endpoint = f"http://model-server-{uuid.uuid4().hex}"
    try:
        sync_client().set(circuit_key(endpoint, "open_until"), str(time.time() + 60))
        assert not admission(endpoint).allowed
        _half_open(endpoint)
        assert admission(endpoint) == circuit.CircuitAdmission(allowed=True, clear_on_success=True)
    finally:
        circuit.circuit_reset(endpoint=endpoint)
