import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
    stream_chat_to,
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


def stream_chat_on_the_reader(settings, messages, *, should_stop=None):
    """`stream_chat_to`'s pieces and end as `stream_chat`'s events, once it has returned or raised: the pieces
    then the end, or the pieces then the error."""
    pieces: list[str] = []
    try:
        end = stream_chat_to(settings, messages, lambda text: pieces.append(text), should_stop=should_stop)
    finally:
        yield from (StreamDelta(text) for text in pieces)
    if end is not None:
        yield end


@pytest.fixture(params=["in_the_thread", "on_the_reader"])
def stream(request):
    """Both ways to read an answer: `stream_chat` in the calling thread, `stream_chat_to` on the process's reader."""
    return stream_chat if request.param == "in_the_thread" else stream_chat_on_the_reader


def partial_text_then_error(settings, messages=QUESTION, stream=stream_chat) -> tuple[str, ModelServerError]:
    text = ""
    with pytest.raises(ModelServerError) as raised:
        for event in stream(settings, messages):
            text += event.text
    return text, raised.value


def test_it_reassembles_exactly_the_recorded_llama_answer(stream, sim):
    recorded = json.loads((FIXTURES / "test_flash_llama_completion_stream_usage.json").read_text())
    recorded_text = "".join(c["choices"][0]["delta"]["content"] for c in recorded if c["choices"])

    text, end = collect(stream(settings_for(sim, max_new_tokens=10), QUESTION))

    assert text == recorded_text
    assert end == StreamEnd(
        finish_reason="length",
        prompt_tokens=sim.requests[-1]["prompt_tokens"],
        completion_tokens=10,
        model=MODEL_ID,
    )


def test_it_skips_the_empty_eos_chunk_and_reports_stop(stream, sim):
    sim.configure(recording="llama31_ok")
    events = list(stream(settings_for(sim), QUESTION))
    assert events[:-1] == [StreamDelta("OK"), StreamDelta("!")]
    assert events[-1].finish_reason == "stop"
    assert events[-1].completion_tokens == 3


def test_it_streams_scripted_text_piece_by_piece(stream, sim):
    sim.configure(script_text="Parley runs on your servers [1].")
    events = list(stream(settings_for(sim), QUESTION))
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


def test_it_maps_an_in_stream_validation_error_before_any_token(stream, sim):
    sim.configure(max_total_tokens=100)
    with pytest.raises(ModelServerError) as raised:
        list(stream(settings_for(sim, max_new_tokens=512), QUESTION))
    assert raised.value.kind == "validation"
    assert "must be <= 100" in raised.value.message
    assert len(sim.generation_requests()) == 1  # not retried


def test_it_retries_before_the_first_token_and_then_succeeds(stream, sim):
    sim.configure(fail_first_n=2, fault="overloaded_429")
    text, _end = collect(stream(settings_for(sim, connect_retries=3), QUESTION))
    assert text.startswith("**Deep Learning")
    assert [r["status"] for r in sim.generation_requests()] == [429, 429, 200]


def test_it_gives_up_after_the_configured_retries(sim):
    sim.configure(fault="unavailable_503")
    with pytest.raises(ModelServerError) as raised:
        list(stream_chat(settings_for(sim, connect_retries=2), QUESTION))
    assert raised.value.kind == "unavailable"
    assert len(sim.generation_requests()) == 3


def test_it_does_not_retry_after_the_first_token_and_keeps_the_partial_text(stream, sim):
    sim.configure(script_text="one two three four", fault="error_midstream", fault_after_tokens=2)
    text, error = partial_text_then_error(stream=stream, settings=settings_for(sim, connect_retries=3))
    assert text == "one two"
    assert (error.kind, error.retryable) == ("stream_error", False)
    assert "Request failed during generation" in error.message
    assert len(sim.generation_requests()) == 1


def test_it_reports_a_dropped_connection_mid_stream(stream, sim):
    sim.configure(script_text="one two three four", fault="drop_connection", fault_after_tokens=2)
    text, error = partial_text_then_error(stream=stream, settings=settings_for(sim, connect_retries=3))
    assert text == "one two"
    assert error.kind == "stream_error"
    assert len(sim.generation_requests()) == 1


def test_it_retries_a_connection_dropped_before_the_first_token(stream, sim):
    sim.configure(fault="drop_connection", fault_after_tokens=0, fail_first_n=1)
    text, _end = collect(stream(settings_for(sim), QUESTION))
    assert text
    assert len(sim.generation_requests()) == 2


def test_it_times_out_per_read_when_the_server_stalls_before_the_first_token(stream, sim):
    sim.configure(fault="stall", stall_s=10)
    started = time.monotonic()
    with pytest.raises(ModelServerError) as raised:
        list(stream(settings_for(sim, timeout_s=0.3, connect_retries=0), QUESTION))
    assert (raised.value.kind, raised.value.retryable) == ("timeout", True)
    assert time.monotonic() - started < 2


def test_it_times_out_per_read_when_the_server_stalls_mid_stream(stream, sim):
    sim.configure(script_text="one two three", fault="stall", fault_after_tokens=1, stall_s=10)
    started = time.monotonic()
    text, error = partial_text_then_error(stream=stream, settings=settings_for(sim, timeout_s=0.3, connect_retries=3))
    assert text == "one"
    assert (error.kind, error.retryable) == ("timeout", False)
    assert time.monotonic() - started < 2
    assert len(sim.generation_requests()) == 1


def test_it_allows_a_slow_answer_as_long_as_each_read_is_in_time(stream, sim):
    sim.configure(script_text="a b c d e f g h", ttft_s=0.2, tokens_per_s=20)
    text, _ = collect(stream(settings_for(sim, timeout_s=0.3), QUESTION))
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


def test_a_stop_heard_elsewhere_ends_a_stream_waiting_for_its_first_token_at_once(stream, sim, monkeypatch):
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
    events = list(stream(settings_for(sim), QUESTION, should_stop=stop.is_set))

    assert events == [StreamEnd(finish_reason="stopped")]
    assert time.monotonic() - asked_at[0] < 0.1
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_it_does_not_start_when_already_told_to_stop(stream, sim):
    events = list(stream(settings_for(sim), QUESTION, should_stop=lambda: True))
    assert events == [StreamEnd(finish_reason="stopped")]
    assert sim.generation_requests() == []


def test_it_hangs_up_when_the_caller_stops_iterating(sim):
    sim.configure(script_text="word " * 200, tokens_per_s=50)
    stream = stream_chat(settings_for(sim), QUESTION)
    next(stream)
    stream.close()
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_one_thread_reads_every_stream_of_the_process_each_whole_and_in_order(sim):
    sim.configure(script_text="one two three four five six", tokens_per_s=200)
    pieces: dict[int, list[str]] = {n: [] for n in range(20)}
    readers: set[str] = set()

    def answer(n: int) -> StreamEnd | None:
        def on_delta(text: str) -> bool:
            readers.add(threading.current_thread().name)
            pieces[n].append(text)
            return False

        return stream_chat_to(settings_for(sim), QUESTION, on_delta)

    with ThreadPoolExecutor(20) as pool:
        ends = list(pool.map(answer, range(20)))

    assert {"".join(texts) for texts in pieces.values()} == {"one two three four five six"}
    assert all(end.finish_reason == "stop" for end in ends)
    assert readers == {"model-stream-reader"}


def test_on_the_reader_a_stop_ends_the_stream_promptly_and_hangs_up(sim):
    sim.configure(script_text="word " * 200, tokens_per_s=50)
    received: list[str] = []
    started = time.monotonic()

    end = stream_chat_to(
        settings_for(sim), QUESTION, lambda text: received.append(text), should_stop=lambda: len(received) >= 3
    )

    assert received == ["word", " word", " word"]
    assert end == StreamEnd(finish_reason="stopped", model=MODEL_ID)
    assert time.monotonic() - started < 2
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_when_the_caller_has_had_enough_the_stream_ends_without_an_end_and_hangs_up(sim):
    sim.configure(script_text="word " * 200, tokens_per_s=100)
    received: list[str] = []

    def on_delta(text: str) -> bool:
        received.append(text)
        return len(received) == 2

    assert stream_chat_to(settings_for(sim), QUESTION, on_delta) is None
    assert received == ["word", " word"]
    assert sim.wait_for(lambda requests: requests[-1]["outcome"] == "client_disconnected", timeout_s=2)


def test_an_error_of_the_callers_own_is_raised_as_it_is_and_the_other_streams_go_on(sim):
    sim.configure(script_text="one two three four", tokens_per_s=100)

    def failing(text: str) -> bool:
        raise KeyError("the caller's own fault")

    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(
            lambda: "".join(
                event.text
                for event in stream_chat_on_the_reader(settings_for(sim), QUESTION)
                if isinstance(event, StreamDelta)
            )
        )
        with pytest.raises(KeyError, match="the caller's own fault"):
            stream_chat_to(settings_for(sim), QUESTION, failing)
        assert other.result(timeout=5) == "one two three four"


class ByteServer:
    """One HTTP response, written in the given pieces with a pause between them, to each connection, which it then
    keeps open until the client closes it."""

    def __init__(self, pieces: list[bytes], pause_s: float = 0.005, tls: ssl.SSLContext | None = None) -> None:
        self.pieces, self.pause_s, self.tls = pieces, pause_s, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))
                while len(body) < length:
                    body += connection.recv(65536)
                for piece in self.pieces:
                    connection.sendall(piece)
                    time.sleep(self.pause_s)
                connection.recv(1)  # keep the connection open, as a server keeping it alive does, until the client goes

    def close(self) -> None:
        self.listener.close()


def sse_response(texts: list[str]) -> bytes:
    """A chunked event-stream response, one chunk per event, as TGI sends it."""
    events = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]} for text in texts
    ] + [{"model": "m", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]}]
    body = b"".join(
        b"%x\r\n%s\r\n" % (len(data), data)
        for data in [b"data: %s\n\n" % json.dumps(event).encode() for event in events] + [b"data: [DONE]\n\n"]
    )
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + body + b"0\r\n\r\n"


TEXTS = ["Über", " ✓ 日本", "語", " [1](https://x.example/a)", "\n\n- ok"]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda response: [response], id="the_whole_answer_with_the_headers"),
        pytest.param(lambda response: [response[i : i + 7] for i in range(0, len(response), 7)], id="in_7_byte_pieces"),
        pytest.param(
            lambda response: [response[:90], response[90:91], response[91:200], response[200:]], id="cut_anywhere"
        ),
    ],
)
def test_a_stream_reads_the_same_however_its_bytes_are_cut(stream, cut):
    server = ByteServer(cut(sse_response(TEXTS)))
    try:
        text, end = collect(stream(GenerationSettings(endpoint=server.url, timeout_s=2.0, connect_retries=0), QUESTION))
    finally:
        server.close()
    assert text == "".join(TEXTS)
    assert (end.finish_reason, end.model) == ("stop", "m")


def self_signed_tls(directory) -> tuple[ssl.SSLContext, str]:
    """A server context for 127.0.0.1 and the file of its certificate, for clients to trust (SSL_CERT_FILE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_file, key_file = directory / "cert.pem", directory / "key.pem"
    certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate_file, key_file)
    return context, str(certificate_file)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda response: [response], id="the_whole_answer_with_the_headers"),
        pytest.param(lambda response: [response[i : i + 7] for i in range(0, len(response), 7)], id="in_7_byte_pieces"),
    ],
)
def test_a_stream_over_tls_is_read_on_the_reader_too(cut, tmp_path, monkeypatch):
    tls, certificate_file = self_signed_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", certificate_file)
    monkeypatch.setattr(client, "_session", None)  # the process's HTTP session, made again with that trust
    server = ByteServer(cut(sse_response(TEXTS)), tls=tls)
    pieces: list[str] = []
    readers: set[str] = set()

    def on_delta(text: str) -> bool:
        readers.add(threading.current_thread().name)
        pieces.append(text)
        return False

    try:
        end = stream_chat_to(
            GenerationSettings(endpoint=server.url, timeout_s=2.0, connect_retries=0), QUESTION, on_delta
        )
    finally:
        server.close()
    assert "".join(pieces) == "".join(TEXTS)
    assert (end.finish_reason, end.model) == ("stop", "m")
    assert readers == {"model-stream-reader"}


def test_it_works_with_a_plain_openai_compatible_server(stream, sim):
    sim.configure(openai_only=True, script_text="Hello.")
    text, end = collect(stream(settings_for(sim, adapter_id="llama3"), QUESTION))
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


def test_it_reaches_the_model_server_when_hugging_face_hub_is_offline(stream, sim, monkeypatch):
    # knowledge.embeddings sets HF_HUB_OFFLINE so the embedding model never reaches for the Hub.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    text, _end = collect(stream(settings_for(sim), QUESTION))
    assert text.startswith("**Deep Learning")


def test_opening_a_stream_does_not_have_every_open_stream_asked_again():
    asked = []
    first = client._StopWatcher(lambda: asked.append(time.monotonic()) or False, on_stop=lambda: None)
    opened = []
    try:
        time.sleep(0.05)  # the watcher's first look at the first stream
        asked.clear()
        started = time.monotonic()
        for _ in range(20):
            opened.append(client._StopWatcher(lambda: False, on_stop=lambda: None))
            time.sleep(0.005)  # each stream opens while the watcher thread can run
        took = time.monotonic() - started
    finally:
        for watcher in [first, *opened]:
            watcher.cancel()

    # Only its regular polls, not one look per stream opened.
    assert len(asked) <= took / client.STOP_WATCH_POLL_S + 1
