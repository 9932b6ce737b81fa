import json
import threading
import time

import pytest

from devtools.tgi_simulator import MODEL_ID, RECORDINGS_DIR, TGISimulator, simulated_tokens
from inference import client
from inference.client import (
    GenerationSettings,
    ModelInfo,
    ModelServerError,
    StreamDelta,
    StreamEnd,
    count_tokens,
    estimate_tokens,
    forget_endpoint,
    model_info,
    model_server_health,
    stop_checks_now,
    stream_chat,
)

FIXTURES = RECORDINGS_DIR
QUESTION = [{"role": "user", "content": "What is Deep Learning?"}]


@pytest.fixture(scope="module")
def running_simulator():
    with TGISimulator() as simulator:
        yield simulator


@pytest.fixture
def sim(running_simulator):
    running_simulator.reset()
    if not running_simulator.listening:
        running_simulator.start_listening()
    forget_endpoint()
    return running_simulator


def settings_for(sim, **overrides) -> GenerationSettings:
    return GenerationSettings(**{"endpoint": sim.url, "timeout_s": 5.0, "backoff_s": 0.01, **overrides})


def collect(events) -> tuple[str, StreamEnd]:
    events = list(events)
    assert all(isinstance(event, StreamDelta) for event in events[:-1])
    assert isinstance(events[-1], StreamEnd)
    return "".join(event.text for event in events[:-1]), events[-1]


def partial_text_then_error(settings, messages=QUESTION) -> tuple[str, ModelServerError]:
    text = ""
    with pytest.raises(ModelServerError) as raised:
        for event in stream_chat(settings, messages):
            text += event.text
    return text, raised.value


def test_it_reassembles_exactly_the_recorded_llama_answer(sim):
    recorded = json.loads((FIXTURES / "test_flash_llama_completion_stream_usage.json").read_text())
    recorded_text = "".join(c["choices"][0]["delta"]["content"] for c in recorded if c["choices"])

    text, end = collect(stream_chat(settings_for(sim, max_new_tokens=10), QUESTION))

    assert text == recorded_text
    assert end == StreamEnd(
        finish_reason="length",
        prompt_tokens=sim.requests[-1]["prompt_tokens"],
        completion_tokens=10,
        model=MODEL_ID,
    )


def test_it_skips_the_empty_eos_chunk_and_reports_stop(sim):
    sim.configure(recording="llama31_ok")
    events = list(stream_chat(settings_for(sim), QUESTION))
    assert events[:-1] == [StreamDelta("OK"), StreamDelta("!")]
    assert events[-1].finish_reason == "stop"
    assert events[-1].completion_tokens == 3


def test_it_streams_scripted_text_piece_by_piece(sim):
    sim.configure(script_text="Parley runs on your servers [1].")
    events = list(stream_chat(settings_for(sim), QUESTION))
    assert [e.text for e in events[:-1]] == ["Parley", " runs", " on", " your", " servers", " [", "1", "]."]


def test_it_sends_the_adapter_id_as_model_and_tgi_for_the_base_model(sim):
    collect(stream_chat(settings_for(sim, adapter_id="acme-support"), QUESTION))
    collect(stream_chat(settings_for(sim), QUESTION))
    assert [r["body"]["model"] for r in sim.generation_requests()] == ["acme-support", "tgi"]
    assert sim.generation_requests()[0]["adapter_id"] == "acme-support"


def test_it_sends_the_generation_parameters(sim):
    settings = settings_for(sim, temperature=0.2, top_p=0.9, max_new_tokens=64, stop=("\nUser:",), seed=7)
    collect(stream_chat(settings, QUESTION))
    body = sim.requests[-1]["body"]
    assert body["messages"] == QUESTION
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"], body["seed"]) == (
        0.2,
        0.9,
        64,
        ["\nUser:"],
        7,
    )
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_it_never_sends_a_top_p_of_one_which_tgi_rejects(sim):
    _text, end = collect(stream_chat(settings_for(sim, top_p=1.0), QUESTION))
    assert "top_p" not in sim.requests[-1]["body"]
    assert end.finish_reason == "length"


def test_it_does_not_send_a_local_hugging_face_token_to_the_model_server(sim, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_must_not_leak")
    collect(stream_chat(settings_for(sim), QUESTION))
    collect(stream_chat(settings_for(sim, api_key="endpoint-key"), QUESTION))
    authorizations = [r["headers"].get("authorization") for r in sim.generation_requests()]
    assert authorizations == ["Bearer -", "Bearer endpoint-key"]


def test_it_authenticates_with_the_endpoint_key(sim):
    sim.configure(api_key="endpoint-key")
    text, _ = collect(stream_chat(settings_for(sim, api_key="endpoint-key"), QUESTION))
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim), QUESTION))
    assert text
    assert (raised.value.kind, raised.value.retryable) == ("unauthorized", False)


@pytest.mark.parametrize(
    ("fault", "kind", "retryable"),
    [
        ("overloaded_429", "overloaded", True),
        ("unavailable_503", "unavailable", True),
        ("generation_424", "generation", False),
    ],
)
def test_it_maps_http_faults_to_a_kind(sim, fault, kind, retryable):
    sim.configure(fault=fault)
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, connect_retries=0), QUESTION))
    assert (raised.value.kind, raised.value.retryable) == (kind, retryable)


def test_it_maps_an_in_stream_validation_error_before_any_token(sim):
    sim.configure(max_total_tokens=100)
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, max_new_tokens=512), QUESTION))
    assert raised.value.kind == "validation"
    assert "must be <= 100" in raised.value.message
    assert len(sim.generation_requests()) == 1  # not retried


def test_it_retries_before_the_first_token_and_then_succeeds(sim):
    sim.configure(fail_first_n=2, fault="overloaded_429")
    text, _end = collect(stream_chat(settings_for(sim, connect_retries=3), QUESTION))
    assert text.startswith("**Deep Learning")
    assert [r["status"] for r in sim.generation_requests()] == [429, 429, 200]


def test_it_gives_up_after_the_configured_retries(sim):
    sim.configure(fault="unavailable_503")
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, connect_retries=2), QUESTION))
    assert raised.value.kind == "unavailable"
    assert len(sim.generation_requests()) == 3


def test_it_does_not_retry_after_the_first_token_and_keeps_the_partial_text(sim):
    sim.configure(script_text="one two three four", fault="error_midstream", fault_after_tokens=2)
    text, error = partial_text_then_error(settings_for(sim, connect_retries=3))
    assert text == "one two"
    assert (error.kind, error.retryable) == ("stream_error", False)
    assert "Request failed during generation" in error.message
    assert len(sim.generation_requests()) == 1


def test_it_reports_a_dropped_connection_mid_stream(sim):
    sim.configure(script_text="one two three four", fault="drop_connection", fault_after_tokens=2)
    text, error = partial_text_then_error(settings_for(sim, connect_retries=3))
    assert text == "one two"
    assert error.kind == "stream_error"
    assert len(sim.generation_requests()) == 1


def test_it_retries_a_connection_dropped_before_the_first_token(sim):
    sim.configure(fault="drop_connection", fault_after_tokens=0, fail_first_n=1)
    text, _end = collect(stream_chat(settings_for(sim), QUESTION))
    assert text
    assert len(sim.generation_requests()) == 2


def test_it_times_out_per_read_when_the_server_stalls_before_the_first_token(sim):
    sim.configure(fault="stall", stall_s=10)
    started = time.monotonic()
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, timeout_s=0.3, connect_retries=0), QUESTION))
    assert (raised.value.kind, raised.value.retryable) == ("timeout", True)
    assert time.monotonic() - started < 2


def test_it_times_out_per_read_when_the_server_stalls_mid_stream(sim):
    sim.configure(script_text="one two three", fault="stall", fault_after_tokens=1, stall_s=10)
    started = time.monotonic()
    text, error = partial_text_then_error(settings_for(sim, timeout_s=0.3, connect_retries=3))
    assert text == "one"
    assert (error.kind, error.retryable) == ("timeout", False)
    assert time.monotonic() - started < 2
    assert len(sim.generation_requests()) == 1


def test_it_allows_a_slow_answer_as_long_as_each_read_is_in_time(sim):
    sim.configure(script_text="a b c d e f g h", ttft_s=0.2, tokens_per_s=20)
    text, _ = collect(stream_chat(settings_for(sim, timeout_s=0.3), QUESTION))
    assert text == "a b c d e f g h"


def test_it_reports_a_refused_connection_as_unreachable(sim):
    sim.stop_listening()
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, connect_retries=1), QUESTION))
    assert (raised.value.kind, raised.value.retryable) == ("unreachable", True)


def test_it_waits_for_a_model_server_that_is_still_loading(sim):
    sim.stop_listening()
    threading.Timer(0.3, sim.start_listening).start()
    text, _end = collect(stream_chat(settings_for(sim, connect_retries=5, backoff_s=0.1), QUESTION))
    assert text.startswith("**Deep Learning")


def test_it_stops_promptly_when_asked_and_hangs_up(sim):
    sim.configure(script_text="word " * 200, tokens_per_s=50)
    received: list[str] = []
    events = []
    started = time.monotonic()
    for event in stream_chat(settings_for(sim), QUESTION, should_stop=lambda: len(received) >= 3):
        events.append(event)
        if isinstance(event, StreamDelta):
            received.append(event.text)

    assert received == ["word", " word", " word"]
    assert events[-1] == StreamEnd(finish_reason="stopped", model=MODEL_ID)
    assert time.monotonic() - started < 2
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_a_stop_heard_elsewhere_ends_a_stream_waiting_for_its_first_token_at_once(sim, monkeypatch):
    """The caller hears of the stop (Parley: on Redis) and says so; the stream does not wait for its next poll,
    here made longer than the test."""
    monkeypatch.setattr(client, "STOP_WATCH_POLL_S", 30.0)
    sim.configure(ttft_s=10.0, script_text="word " * 5)
    stop = threading.Event()
    asked_at: list[float] = []

    def stop_after_a_while() -> None:
        time.sleep(0.3)
        asked_at.append(time.monotonic())
        stop.set()
        stop_checks_now()

    threading.Thread(target=stop_after_a_while).start()
    events = list(stream_chat(settings_for(sim), QUESTION, should_stop=stop.is_set))

    assert events == [StreamEnd(finish_reason="stopped")]
    assert time.monotonic() - asked_at[0] < 0.1
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_it_does_not_start_when_already_told_to_stop(sim):
    events = list(stream_chat(settings_for(sim), QUESTION, should_stop=lambda: True))
    assert events == [StreamEnd(finish_reason="stopped")]
    assert sim.generation_requests() == []


def test_it_hangs_up_when_the_caller_stops_iterating(sim):
    sim.configure(script_text="word " * 200, tokens_per_s=50)
    stream = stream_chat(settings_for(sim), QUESTION)
    next(stream)
    stream.close()
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_it_works_with_a_plain_openai_compatible_server(sim):
    sim.configure(openai_only=True, script_text="Hello.")
    text, end = collect(stream_chat(settings_for(sim, adapter_id="llama3"), QUESTION))
    info = model_info(sim.url)
    assert (text, end.finish_reason) == ("Hello.", "stop")
    assert info == ModelInfo(model_id="unknown", max_input_tokens=4095, max_total_tokens=4096)
    assert count_tokens(sim.url, "Hello world!") == estimate_tokens("Hello world!")
    assert model_server_health(sim.url) == "ok"


def test_it_reads_model_limits_from_info_once_per_endpoint(sim):
    sim.configure(max_input_tokens=3000, max_total_tokens=4000)
    first = model_info(sim.url)
    second = model_info(sim.url + "/")
    assert first == second == ModelInfo(model_id=MODEL_ID, max_input_tokens=3000, max_total_tokens=4000)
    assert [r["path"] for r in sim.requests] == ["/info"]


def test_it_reports_an_unreachable_server_when_reading_model_info(sim):
    sim.stop_listening()
    with pytest.raises(ModelServerError) as raised:
        model_info(sim.url)
    assert raised.value.kind == "unreachable"


def test_it_counts_tokens_exactly_with_tokenize(sim):
    text = "Parley runs on your servers."
    assert count_tokens(sim.url, text) == 1 + len(simulated_tokens(text))
    assert count_tokens(sim.url, "") == 0


def test_it_remembers_that_an_endpoint_has_no_tokenize(sim):
    sim.configure(openai_only=True)
    for _ in range(3):
        count_tokens(sim.url, "Hello world!")
    assert [r["path"] for r in sim.requests] == ["/tokenize"]


@pytest.mark.parametrize(
    "text",
    ["Hello world!", "Ünïcödé → 日本語のテキスト 🙂", "a.b,c;d:e!f?g", "1234567890" * 5, "x" * 1000],
)
def test_it_never_estimates_fewer_tokens_than_the_pre_tokenizer_finds(text):
    assert estimate_tokens(text) >= len(simulated_tokens(text))


def test_it_reports_model_server_health(sim):
    assert model_server_health(sim.url) == "ok"
    sim.configure(healthy=False)
    assert model_server_health(sim.url) == "unhealthy"
    sim.stop_listening()
    assert model_server_health(sim.url) == "unreachable"


@pytest.mark.parametrize(
    "overrides",
    [{"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"stop": ("a", "b", "c", "d", "e")}],
)
def test_it_refuses_settings_tgi_would_reject(overrides):
    with pytest.raises(ValueError):
        GenerationSettings(endpoint="http://tgi:8080", **overrides)


def test_it_reaches_the_model_server_when_hugging_face_hub_is_offline(sim, monkeypatch):
    # knowledge.embeddings sets HF_HUB_OFFLINE so the embedding model never reaches for the Hub.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    text, _end = collect(stream_chat(settings_for(sim), QUESTION))
    assert text.startswith("**Deep Learning")
