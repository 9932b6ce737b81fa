import http.client
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.tgi_pacing import Pacer
from devtools.tgi_simulator import MODEL_ID, RECORDINGS_DIR, TGISimulator

FIXTURES = RECORDINGS_DIR
CHAT_KEY_ORDER = ["object", "id", "created", "model", "system_fingerprint", "choices", "usage"]
ASK_DEEP_LEARNING = {"model": "tgi", "messages": [{"role": "user", "content": "What is Deep Learning?"}]}


@pytest.fixture(scope="module")
def running_simulator():
    with TGISimulator() as simulator:
        yield simulator


@pytest.fixture
def sim(running_simulator):
    running_simulator.reset()
    if not running_simulator.listening:
        running_simulator.start_listening()
    return running_simulator


def sse_data(body: bytes) -> list[str]:
    return [frame[len("data: ") :] for frame in body.decode().split("\n\n") if frame.startswith("data: ")]


def post_chat(sim, **body):
    return httpx.post(f"{sim.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, **body}, timeout=10)


def test_it_replays_the_mistral_tgi3_chat_capture_byte_for_byte(sim):
    sim.configure(recording="mistral_tgi301_wire")
    response = post_chat(sim, stream=True)
    expected = (FIXTURES / "mistral-7b-instruct-v0.2_chat_completions_stream_tgi3.0.1.sse").read_bytes()
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate_stream", {"inputs": "Please answer the following question: complete one two and ____."}),
        ("/", {"inputs": "Please answer the following question: complete one two and ____.", "stream": True}),
    ],
)
def test_it_replays_the_llama32_generate_stream_capture_byte_for_byte(sim, path, body):
    sim.configure(recording="llama32_generate_wire")
    response = httpx.post(f"{sim.url}{path}", json=body)
    assert response.content == (FIXTURES / "llama-3.2-3b_compat_generate_stream_tgi3.sse").read_bytes()
    assert b"[DONE]" not in response.content


def test_it_streams_the_recorded_llama31_chunks_as_in_tgis_snapshot(sim):
    snapshot = json.loads((FIXTURES / "test_flash_llama_completion_stream_usage.json").read_text())
    response = post_chat(sim, stream=True, max_tokens=10, temperature=0.0, stream_options={"include_usage": True})

    events = sse_data(response.content)
    assert events[-1] == "[DONE]"
    assert response.content.endswith(b"data: [DONE]\n\n")
    chunks = [json.loads(event) for event in events[:-1]]
    assert [list(chunk) for chunk in chunks] == [CHAT_KEY_ORDER] * len(snapshot)
    for chunk, recorded in zip(chunks, snapshot, strict=True):
        for choice in recorded["choices"]:
            choice["delta"].pop("tool_calls")  # added by the client-side serialiser, absent on the wire
        if recorded["usage"] is None:
            assert chunk == recorded
        else:
            assert chunk["choices"] == []
            assert chunk["usage"]["completion_tokens"] == recorded["usage"]["completion_tokens"]
            assert chunk["usage"]["total_tokens"] == chunk["usage"]["prompt_tokens"] + 10


def test_it_ends_the_ok_recording_with_an_empty_eos_chunk(sim):
    sim.configure(recording="llama31_ok")
    chunks = [json.loads(e) for e in sse_data(post_chat(sim, stream=True).content)[:-1]]
    assert [(c["choices"][0]["delta"]["content"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ("OK", None),
        ("!", None),
        ("", "stop"),
    ]


def test_it_sends_no_usage_chunk_unless_asked(sim):
    chunks = [json.loads(e) for e in sse_data(post_chat(sim, stream=True).content)[:-1]]
    assert all(chunk["choices"] and chunk["usage"] is None for chunk in chunks)


def test_it_echoes_an_adapter_id_as_the_model_and_records_it(sim):
    adapter_chunk = json.loads(sse_data(post_chat(sim, stream=True, model="acme-support").content)[0])
    served_chunk = json.loads(sse_data(post_chat(sim, stream=True, model="tgi").content)[0])
    absent = {"messages": ASK_DEEP_LEARNING["messages"], "stream": True}
    absent_chunk = json.loads(sse_data(httpx.post(f"{sim.url}/v1/chat/completions", json=absent).content)[0])

    assert adapter_chunk["model"] == "acme-support"
    assert served_chunk["model"] == absent_chunk["model"] == MODEL_ID
    assert [r["adapter_id"] for r in sim.generation_requests()] == ["acme-support", None, None]


def test_it_streams_scripted_text_as_token_pieces(sim):
    sim.configure(script_text="Parley runs on your servers [1].")
    chunks = [json.loads(e) for e in sse_data(post_chat(sim, stream=True).content)[:-1]]
    pieces = [chunk["choices"][0]["delta"]["content"] for chunk in chunks]
    assert pieces == ["Parley", " runs", " on", " your", " servers", " [", "1", "].", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_it_answers_each_prompt_with_the_reply_scripted_for_a_word_in_it(sim):
    sim.configure(script_text="Default.", script_replies={"Norway": "We ship to Norway.", "refund": "Five days."})

    def answer(question: str) -> str:
        messages = [{"role": "system", "content": "refund Norway"}, {"role": "user", "content": question}]
        return post_chat(sim, messages=messages).json()["choices"][0]["message"]["content"]

    assert answer("Do you ship to Norway? And a refund?") == "We ship to Norway."  # the first key found
    assert answer("How long does a refund take?") == "Five days."
    assert answer("Anything else?") == "Default.", "only the last message counts"
    generated = httpx.post(f"{sim.url}/generate", json={"inputs": "A refund, please"}).json()
    assert generated["generated_text"] == "Five days."


def test_it_cuts_the_answer_at_max_tokens_with_finish_reason_length(sim):
    sim.configure(script_text="one two three four five")
    chunks = [json.loads(e) for e in sse_data(post_chat(sim, stream=True, max_tokens=2).content)[:-1]]
    assert [(c["choices"][0]["delta"]["content"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ("one", None),
        (" two", "length"),
    ]


def test_it_answers_a_non_streaming_chat_completion(sim):
    sim.configure(script_text="Hello there.")
    body = post_chat(sim).json()
    assert list(body) == CHAT_KEY_ORDER
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 4


def test_it_rejects_top_p_of_one_like_tgi(sim):
    plain = post_chat(sim, top_p=1.0)
    streamed = post_chat(sim, top_p=1.0, stream=True)

    assert plain.status_code == 422
    assert plain.json() == {
        "error": "Input validation error: `top_p` must be > 0.0 and < 1.0",
        "error_type": "validation",
    }
    assert streamed.status_code == 200
    assert sse_data(streamed.content) == [
        '{"error":{"message":"Input validation error: `top_p` must be > 0.0 and < 1.0","http_status_code":422}}',
        "[DONE]",
    ]


def test_it_accepts_temperature_zero_on_chat_but_not_on_generate(sim):
    assert post_chat(sim, temperature=0).status_code == 200
    response = httpx.post(f"{sim.url}/generate", json={"inputs": "Hi", "parameters": {"temperature": 0}})
    assert response.status_code == 422
    assert response.json()["error"] == "Input validation error: `temperature` must be strictly positive"


def test_it_reports_an_overlong_generate_stream_request_exactly_like_the_real_capture(sim):
    sim.configure(max_total_tokens=4096)
    body = {
        "inputs": "Write a short story about a robot that becomes sentient and takes over the world.",
        "parameters": {"max_new_tokens": 10000},
        "stream": True,
    }
    response = httpx.post(f"{sim.url}/", json=body)
    expected = (FIXTURES / "llama-3.2-3b_compat_generate_stream_validation_error_tgi3.sse").read_bytes()
    assert response.status_code == 200
    assert response.content == expected


def test_it_rejects_a_body_without_messages_exactly_like_axum(sim):
    raw = (
        b'{"model":"google/gemma-2b","max_tokens":500,"return_full_text":false,"temperature":0.1,"seed":0,'
        b'"stream":true,"options":{"chatCompletion":true}}'
    )
    response = httpx.post(f"{sim.url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/plain")
    assert response.content == (FIXTURES / "gemma-2b_chat_completions_422_axum_deserialize_error.txt").read_bytes()


def test_it_rejects_invalid_json_with_400_and_a_missing_content_type_with_415(sim):
    broken = httpx.post(
        f"{sim.url}/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    untyped = httpx.post(f"{sim.url}/v1/chat/completions", content=json.dumps(ASK_DEEP_LEARNING).encode())

    assert broken.status_code == 400
    assert broken.text.startswith("Failed to parse the request body as JSON: ")
    assert untyped.status_code == 415
    assert untyped.text == "Expected request with `Content-Type: application/json`"


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "message"),
    [
        ("overloaded_429", 429, "overloaded", "Model is overloaded"),
        ("unavailable_503", 503, "unavailable", "Service Unavailable: model is not ready (simulated)"),
        ("generation_424", 424, "generation", "Request failed during generation: Server error: CUDA out of memory"),
    ],
)
def test_it_answers_http_faults_with_tgis_status_and_error_body(sim, fault, status, error_type, message):
    sim.configure(fault=fault)
    response = post_chat(sim, stream=True)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error", "error_type"]
    assert response.json()["error"].startswith(message)
    assert response.json()["error_type"] == error_type


def test_it_reports_a_midstream_error_after_n_tokens_on_chat(sim):
    sim.configure(script_text="one two three four", fault="error_midstream", fault_after_tokens=2)
    events = sse_data(post_chat(sim, stream=True).content)
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]] == ["one", " two"]
    assert json.loads(events[2]) == {
        "error": {
            "message": "Request failed during generation: Server error: CUDA out of memory (simulated)",
            "http_status_code": 422,
        }
    }
    assert events[3:] == ["[DONE]"]


def test_it_reports_a_midstream_error_on_generate_stream_without_done(sim):
    sim.configure(script_text="one two three four", fault="error_midstream", fault_after_tokens=1)
    events = sse_data(httpx.post(f"{sim.url}/generate_stream", json={"inputs": "Hi"}).content)
    assert json.loads(events[0])["token"]["text"] == "one"
    assert json.loads(events[1]) == {
        "error": "Request failed during generation: Server error: CUDA out of memory (simulated)",
        "error_type": "generation",
    }
    assert len(events) == 2


def test_it_stalls_after_sending_headers(sim):
    sim.configure(fault="stall", stall_s=5)
    started = time.monotonic()
    with (
        httpx.Client(timeout=httpx.Timeout(2.0, read=0.3)) as client,
        client.stream("POST", f"{sim.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, "stream": True}) as r,
    ):
        assert r.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            r.read()
    assert time.monotonic() - started < 2


def test_it_drops_the_connection_mid_stream(sim):
    sim.configure(script_text="one two three four", fault="drop_connection", fault_after_tokens=2)
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", f"{sim.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, "stream": True}) as r,
    ):
        for part in r.iter_bytes():
            received += part
    assert [json.loads(e)["choices"][0]["delta"]["content"] for e in sse_data(received)] == ["one", " two"]


def test_it_fails_the_first_n_requests_then_recovers(sim):
    sim.configure(fail_first_n=2)
    statuses = [post_chat(sim, stream=True).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


def test_it_refuses_connections_while_not_listening_and_comes_back_on_the_same_port(sim):
    url = sim.url
    sim.stop_listening()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    sim.start_listening()
    assert sim.url == url
    assert httpx.get(f"{url}/health").status_code == 200


def test_it_can_be_configured_and_inspected_over_http(sim):
    configured = httpx.post(f"{sim.url}/_simulator/config", json={"script_text": "Hi!", "ttft_s": 0.01})
    post_chat(sim, stream=True, model="acme", headers=None)
    recorded = httpx.get(f"{sim.url}/_simulator/requests").json()

    assert configured.json()["script_text"] == "Hi!"
    assert recorded[-1]["body"]["model"] == "acme"
    assert recorded[-1]["headers"]["content-type"] == "application/json"
    assert recorded[-1]["outcome"] == "completed"
    assert httpx.post(f"{sim.url}/_simulator/config", json={"fault": "nonsense"}).status_code == 400
    assert httpx.post(f"{sim.url}/_simulator/reset").json()["script_text"] is None
    assert httpx.get(f"{sim.url}/_simulator/requests").json() == []


def test_it_refuses_connections_for_a_while_when_told_over_http(sim):
    httpx.post(f"{sim.url}/_simulator/config", json={"refuse_connections_s": 0.5})
    time.sleep(0.2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/health")
    time.sleep(0.6)
    assert httpx.get(f"{sim.url}/health").status_code == 200


def test_it_reports_health_like_tgi(sim):
    healthy = httpx.get(f"{sim.url}/health")
    sim.configure(healthy=False)
    unhealthy = httpx.get(f"{sim.url}/health")

    assert (healthy.status_code, healthy.content) == (200, b"")
    assert unhealthy.status_code == 503
    assert unhealthy.json() == {"error": "unhealthy", "error_type": "healthcheck"}


def test_it_describes_the_model_on_info_models_and_metrics(sim):
    sim.configure(max_input_tokens=4095, max_total_tokens=4096)
    info = httpx.get(f"{sim.url}/info").json()
    models = httpx.get(f"{sim.url}/v1/models").json()
    post_chat(sim)
    metrics = httpx.get(f"{sim.url}/metrics").text

    assert list(info)[:8] == [
        "model_id", "model_sha", "model_pipeline_tag", "max_concurrent_requests", "max_best_of",
        "max_stop_sequences", "max_input_tokens", "max_total_tokens",
    ]  # fmt: skip
    assert (info["model_id"], info["max_input_tokens"], info["max_total_tokens"]) == (MODEL_ID, 4095, 4096)
    assert models["data"][0]["id"] == MODEL_ID
    assert "tgi_request_count 1" in metrics
    assert "tgi_request_success 1" in metrics


def test_it_tokenizes_into_pieces_with_offsets(sim):
    tokens = httpx.post(f"{sim.url}/tokenize", json={"inputs": "Hello world!"}).json()
    assert [(t["text"], t["start"], t["stop"]) for t in tokens] == [
        ("<|begin_of_text|>", 0, 0),
        ("Hello", 0, 5),
        (" world", 5, 11),
        ("!", 11, 12),
    ]


def test_it_answers_generate_and_the_compat_route_like_tgi(sim):
    sim.configure(script_text="Paris.")
    generated = httpx.post(f"{sim.url}/generate", json={"inputs": "Capital?", "parameters": {"details": True}})
    compat = httpx.post(f"{sim.url}/", json={"inputs": "Capital?"})

    assert generated.json()["generated_text"] == "Paris."
    assert generated.json()["details"]["finish_reason"] == "eos_token"
    assert generated.json()["details"]["tokens"][-1]["special"] is True
    assert compat.json() == [{"generated_text": "Capital?Paris."}]  # return_full_text defaults to true on "/"


def test_it_waits_for_the_time_to_first_token_after_sending_headers(sim):
    sim.configure(ttft_s=0.3, tokens_per_s=100, script_text="a b c")
    started = time.monotonic()
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, "stream": True}) as r:
        headers_after = time.monotonic() - started
        first = next(line for line in r.iter_lines() if line.startswith("data:"))
        first_token_after = time.monotonic() - started
    assert headers_after < 0.2
    assert first_token_after >= 0.3
    assert json.loads(first[len("data: ") :])["choices"][0]["delta"]["content"] == "a"


def test_it_sends_keepalive_comments_during_a_long_wait(sim):
    sim.configure(ttft_s=0.35, keepalive_s=0.1, script_text="a")
    body = post_chat(sim, stream=True).content
    assert body.startswith(b":\n\n:\n\n")


def test_it_requires_the_api_key_when_one_is_set(sim):
    sim.configure(api_key="sekret")
    anonymous = post_chat(sim)
    authorised = httpx.post(
        f"{sim.url}/v1/chat/completions", json=ASK_DEEP_LEARNING, headers={"Authorization": "bearer sekret"}
    )
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    assert authorised.status_code == 200


def test_it_notices_when_the_client_hangs_up(sim):
    sim.configure(script_text="word " * 100, tokens_per_s=20)
    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, "stream": True}) as r:
        next(r.iter_lines())
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_it_serves_500_concurrent_streams(sim):
    sim.configure(ttft_s=0.2, tokens_per_s=50, script_text="Parley runs on your servers [1].")
    port = int(sim.url.rsplit(":", 1)[1])
    payload = json.dumps({**ASK_DEEP_LEARNING, "stream": True})

    def one_stream(_: int) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/v1/chat/completions", payload, {"content-type": "application/json"})
        body = connection.getresponse().read()
        connection.close()
        return body

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=500) as pool:
        bodies = list(pool.map(one_stream, range(500)))
    assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
    assert time.monotonic() - started < 20


def test_it_runs_as_a_process():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.tgi_simulator", "--port", str(port), "--ttft", "0.01"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == f"TGI simulator listening on http://127.0.0.1:{port}"
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=5)


@pytest.fixture(scope="module")
def timed_simulator():
    with TGISimulator(timing=True) as simulator:
        yield simulator


def without_created(frames: list[str]) -> list[dict | str]:
    return [frame if frame == "[DONE]" else {**json.loads(frame), "created": 0} for frame in frames]


def test_the_timed_simulator_paces_every_plain_stream_from_one_thread_at_the_same_times(timed_simulator, sim):
    script = "Parley runs on your own servers, close to your documents."
    for simulator in (timed_simulator, sim):
        simulator.reset()
        simulator.configure(ttft_s=0.05, tokens_per_s=50, script_text=script)
    expected = without_created(sse_data(post_chat(sim, stream=True).content))  # paced by its own request thread

    with ThreadPoolExecutor(max_workers=30) as pool:
        bodies = list(pool.map(lambda _: post_chat(timed_simulator, stream=True).content, range(30)))

    assert all(without_created(sse_data(body)) == expected for body in bodies)
    records = timed_simulator.generation_requests()
    tokens = len(expected) - 1  # all but [DONE] carry a token, the last one empty with the finish reason
    assert len(records) == 30
    for record in records:
        assert record["outcome"] == "completed" and record["tokens_sent"] == tokens
        sent_at = record["sent_at"]
        assert len(sent_at) == tokens
        assert sent_at[0] - record["mono_started"] >= 0.05  # the model's time to the first token
        assert min(later - earlier for earlier, later in itertools.pairwise(sent_at)) >= 0.02  # 50 tokens/s at most
    assert timed_simulator._pacer._thread.is_alive() and sim._pacer._thread is None, "only the timed one paces"


def test_the_timed_simulator_notices_when_the_client_hangs_up(timed_simulator):
    timed_simulator.reset()
    timed_simulator.configure(script_text="word " * 100, tokens_per_s=20)
    with httpx.stream(
        "POST", f"{timed_simulator.url}/v1/chat/completions", json={**ASK_DEEP_LEARNING, "stream": True}
    ) as r:
        next(r.iter_lines())

    assert timed_simulator.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)
    assert timed_simulator.requests[-1]["tokens_sent"] < 10


def test_the_pacer_hands_a_socket_that_would_wait_back_to_the_request_thread():
    paced_end, client_end = socket.socketpair()
    paced_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    events = [(b"x" * 20_000, True) for _ in range(50)]  # nobody reads: the socket fills at once
    sent = []

    with paced_end, client_end:
        paced = Pacer(threading.Event()).pace(
            paced_end, events, first_token_after_s=0, per_token_s=0.001,
            on_token_sent=lambda data, count: sent.append(count),
        )  # fmt: skip

        assert not paced.gone and paced.pending, "a part of an event is left for the request thread"
        assert 0 < paced.next_index < len(events)
        assert sent == list(range(1, paced.tokens_sent + 1)) and paced.tokens_sent == paced.next_index


def test_the_pacer_counts_a_tokens_interval_from_when_its_sending_was_recorded():
    paced_end, client_end = socket.socketpair()
    events = [(b"token %d" % i, True) for i in range(8)]
    recorded_at = []

    def record_late(data, count):  # on a busy machine, the recording sometimes loses the CPU before it stamps the time
        if count % 2:
            time.sleep(0.003)
        recorded_at.append(time.monotonic())

    with paced_end, client_end:
        paced = Pacer(threading.Event()).pace(
            paced_end, events, first_token_after_s=0, per_token_s=0.01, on_token_sent=record_late
        )

    assert paced.tokens_sent == len(events)
    assert min(later - earlier for earlier, later in itertools.pairwise(recorded_at)) >= 0.01
