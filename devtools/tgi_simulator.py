"""A Hugging Face text-generation-inference (TGI) simulator, for tests, benchmarks and demos only.

It is a real HTTP/1.1 server on 127.0.0.1 that speaks TGI's wire format (devtools/tgi_recordings/SOURCES.txt lists
the recordings it replays) so that `inference.client` is exercised over real sockets, never through mocks.

In-process::

    with TGISimulator() as sim:                 # port=0 picks a free port; sim.start() / sim.stop() also work
        sim.url                                 # "http://127.0.0.1:PORT"
        sim.configure(ttft_s=0.02, tokens_per_s=50)
        sim.configure(script_text="Parley runs on your servers [1].")   # the "model" answers this text
        sim.configure(script_replies={"Norway": "Yes, we ship there."})  # ... or this, to prompts naming Norway
        sim.configure(fault="overloaded_429", fail_first_n=2)           # two 429s, then normal answers
        sim.requests                            # recent requests: method, path, headers, body, outcome, ...
        sim.stop_listening(); sim.start_listening()   # connection refused in between, like TGI while loading
        sim.reset()                             # default configuration, forget requests

Over HTTP (same keys as `configure`)::

    POST /_simulator/config   {"ttft_s": 0.5, "fault": "stall"}   -> 200, the full configuration
                              {"refuse_connections_s": 2}          -> stops listening for 2 s
    POST /_simulator/reset
    GET  /_simulator/requests                                      -> JSON list of recorded requests

As a process::

    python -m devtools.tgi_simulator --port 8080 --ttft 0.02 --tps 50

Configuration (`SimulatorConfig`):
- `ttft_s`: wait before the first token (stream headers are sent at once, as TGI does); `tokens_per_s`: pacing
  (None = as fast as possible); `keepalive_s`: send TGI's `:` comment frame during waits longer than this.
- `recording`: one of `RECORDINGS` (default "llama31_deep_learning"); `script_text` overrides it with any
  text, split into token-like pieces; `script_replies` ({key: text}) answers a request whose last message (or
  `inputs`) contains a key with that key's text (the first key found, in order; else as without it). Wire
  recordings ("mistral_tgi301_wire" on chat, "llama32_generate_wire" on /generate_stream and `/`) are replayed
  byte for byte, ignoring max_tokens/stop/include_usage.
- `fault`: one of `FAULTS`. `fault_after_tokens` says when a mid-stream fault happens (default 2 tokens for
  "error_midstream" and "drop_connection", 0 for "stall"). With `fail_first_n` > 0 only that many generation
  requests fail (with `fault`, or "unavailable_503" when no fault is set), then the server recovers.
- `healthy` (GET /health), `openai_only` (answer only /v1/chat/completions and /v1/models, like a
  non-TGI OpenAI-compatible server), `api_key` (bearer required, bare 401 otherwise, like `--api-key`), `model_id`,
  `max_input_tokens`, `max_total_tokens`; `required_model`: a chat request naming another model is refused as
  Ollama refuses it (404 `{"error": "model 'x' not found"}`; TGI itself accepts any name).

The tokenizer approximates Llama 3's pre-tokenizer (one token per pre-token): deterministic, close to the real
counts for English, not exact.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import select
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools.tgi_pacing import Pacer

RECORDINGS_DIR = Path(__file__).resolve().parent / "tgi_recordings"
MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
TGI_VERSION = "3.3.7"
FAULTS = (
    "unavailable_503",
    "overloaded_429",
    "generation_424",
    "error_midstream",
    "stall",
    "drop_connection",
)
GENERATION_PATHS = ("/", "/generate", "/generate_stream", "/v1/chat/completions")
BOS = (128000, "<|begin_of_text|>")
EOT = (128009, "<|eot_id|>")
MAX_STOP_SEQUENCES = 4
# Llama 3.1's chat template always puts "Cutting Knowledge Date: ...\nToday Date: ...\n\n" in the system turn.
LLAMA31_DATE_HEADER_TOKENS = 18
CHAT_MESSAGE_OVERHEAD_TOKENS = 5  # <|start_header_id|> role <|end_header_id|> \n\n ... <|eot_id|>
CHAT_GENERATION_PROMPT_TOKENS = 4

# Llama 3's pre-tokenizer regex, with \p{L} approximated by [^\W\d_] and \p{N} by \d.
_PRETOKEN = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[^\r\n\w]?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
    r"|.",
    re.DOTALL,
)


def simulated_tokens(text: str) -> list[tuple[str, int, int]]:
    """Split text into (piece, start, stop) token-like pieces whose concatenation is the text."""
    return [(m.group(), m.start(), m.end()) for m in _PRETOKEN.finditer(text)]


def simulated_token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % BOS[0]


def _logprob(piece: str) -> float:
    return -round((zlib.crc32(piece.encode()) % 2000) / 1000.0, 4)


def _compact_json(value: Any) -> bytes:
    # serde_json's output: no spaces, UTF-8 kept as is.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _sse_event(value: Any) -> bytes:
    return b"data: " + _compact_json(value) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEPALIVE = b":\n\n"


# --- recordings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One generated token. `finish` uses TGI's generate vocabulary: eos_token | stop_sequence | length."""

    text: str
    finish: str | None = None
    token_id: int | None = None
    logprob: float | None = None
    created: int | None = None  # recorded chunks keep their own timestamps


@dataclass(frozen=True)
class Recording:
    name: str
    chunks: tuple[Chunk, ...]
    created: int
    system_fingerprint: str
    wire_route: str | None = None  # "chat" or "generate": replay `wire_events` byte for byte on that route
    wire_events: tuple[bytes, ...] = ()


def _chunks_from_chat_snapshot(chat_chunks: list[dict]) -> tuple[Chunk, ...]:
    chunks = []
    for chat_chunk in chat_chunks:
        for choice in chat_chunk["choices"]:
            content = choice["delta"].get("content") or ""
            finish = {"stop": "eos_token", "length": "length"}.get(choice["finish_reason"])
            chunks.append(Chunk(text=content, finish=finish, created=chat_chunk["created"]))
    return tuple(chunks)


def _load_integration_snapshot(name: str, filename: str) -> Recording:
    chat_chunks = json.loads((RECORDINGS_DIR / filename).read_text())
    return Recording(
        name=name,
        chunks=_chunks_from_chat_snapshot(chat_chunks),
        created=chat_chunks[0]["created"],
        system_fingerprint=chat_chunks[0]["system_fingerprint"],
    )


def _split_sse_events(raw: bytes) -> tuple[bytes, ...]:
    return tuple(part + b"\n\n" for part in raw.split(b"\n\n") if part)


def _load_mistral_chat_wire() -> Recording:
    events = _split_sse_events(
        (RECORDINGS_DIR / "mistral-7b-instruct-v0.2_chat_completions_stream_tgi3.0.1.sse").read_bytes()
    )
    chat_chunks = [json.loads(event[len(b"data:") :]) for event in events if event != SSE_DONE]
    return Recording(
        name="mistral_tgi301_wire",
        chunks=_chunks_from_chat_snapshot(chat_chunks),
        created=chat_chunks[0]["created"],
        system_fingerprint=chat_chunks[0]["system_fingerprint"],
        wire_route="chat",
        wire_events=events,
    )


def _load_llama32_generate_wire() -> Recording:
    events = _split_sse_events((RECORDINGS_DIR / "llama-3.2-3b_compat_generate_stream_tgi3.sse").read_bytes())
    tokens = [json.loads(event[len(b"data:") :])["token"] for event in events]
    chunks = [Chunk(text=t["text"], token_id=t["id"], logprob=t["logprob"]) for t in tokens]
    chunks[-1] = dataclasses.replace(chunks[-1], finish="length")  # recorded with max_new_tokens=50
    return Recording(
        name="llama32_generate_wire",
        chunks=tuple(chunks),
        created=1736953800,
        system_fingerprint=f"{TGI_VERSION}-native",
        wire_route="generate",
        wire_events=events,
    )


def _script_recording(text: str) -> Recording:
    chunks = [Chunk(text=piece) for piece, _, _ in simulated_tokens(text)]
    chunks.append(Chunk(text="", finish="eos_token"))
    return Recording(
        name="script",
        chunks=tuple(chunks),
        created=int(time.time()),
        system_fingerprint=f"{TGI_VERSION}-native",
    )


_RECORDING_LOADERS = {
    "llama31_deep_learning": lambda: _load_integration_snapshot(
        "llama31_deep_learning", "test_flash_llama_completion_stream_usage.json"
    ),
    "llama31_ok": lambda: _load_integration_snapshot("llama31_ok", "test_chat_hfhub_usage.json"),
    "mistral_tgi301_wire": _load_mistral_chat_wire,
    "llama32_generate_wire": _load_llama32_generate_wire,
}
RECORDINGS = tuple(_RECORDING_LOADERS)
_recordings_cache: dict[str, Recording] = {}


def load_recording(name: str) -> Recording:
    if name not in _recordings_cache:
        _recordings_cache[name] = _RECORDING_LOADERS[name]()
    return _recordings_cache[name]


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatorConfig:
    ttft_s: float = 0.0
    tokens_per_s: float | None = None
    keepalive_s: float | None = None
    recording: str = "llama31_deep_learning"
    script_text: str | None = None
    script_replies: dict[str, str] | None = None
    fault: str | None = None
    fault_after_tokens: int | None = None
    fail_first_n: int = 0
    stall_s: float = 120.0
    healthy: bool = True
    openai_only: bool = False
    api_key: str | None = None
    model_id: str = MODEL_ID
    max_input_tokens: int = 8191
    max_total_tokens: int = 8192
    required_model: str | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; expected one of {FAULTS}")
        if self.recording not in RECORDINGS:
            raise ValueError(f"unknown recording {self.recording!r}; expected one of {RECORDINGS}")
        if self.tokens_per_s is not None and self.tokens_per_s <= 0:
            raise ValueError("tokens_per_s must be positive or None")

    def fault_position(self) -> int:
        if self.fault_after_tokens is not None:
            return self.fault_after_tokens
        return 0 if self.fault == "stall" else 2


# --- the HTTP side --------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The client closed the connection, or the simulator is shutting down."""


class _RequestRejected(Exception):
    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


class _ValidationFailed(Exception):
    pass


def _json_error(status: int, message: str, error_type: str) -> _RequestRejected:
    return _RequestRejected(status, _compact_json({"error": message, "error_type": error_type}), "application/json")


def _text_error(status: int, message: str) -> _RequestRejected:
    return _RequestRejected(status, message.encode(), "text/plain; charset=utf-8")


def _missing_field(field_name: str, raw_body: bytes) -> _RequestRejected:
    # axum's Json extractor reports the position where serde gave up: the end of the body.
    lines = raw_body.decode(errors="replace").split("\n")
    return _text_error(
        422,
        "Failed to deserialize the JSON body into the target type: "
        f"missing field `{field_name}` at line {len(lines)} column {len(lines[-1])}",
    )


_FAULT_RESPONSES = {
    "unavailable_503": (503, "Service Unavailable: model is not ready (simulated)", "unavailable"),
    "overloaded_429": (429, "Model is overloaded", "overloaded"),
    "generation_424": (
        424,
        "Request failed during generation: Server error: CUDA out of memory (simulated)",
        "generation",
    ),
}
_MIDSTREAM_ERROR = "Request failed during generation: Server error: CUDA out of memory (simulated)"


def peer_closed(sock: socket.socket) -> bool:
    """Whether the client of a socket its poller found readable closed its end: readable with nothing to read, or
    failed. Bytes waiting are the client's next request (pipelining), not a hang-up."""
    try:
        return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 4096

    def __init__(self, address: tuple[str, int], simulator: TGISimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-stream are expected here; tracebacks would only be noise.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.simulator = self.server.simulator
        self.simulator._track_connection(self.connection, open_=True)
        self._poller = select.poll()
        self._poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)

    def finish(self) -> None:
        self.simulator._track_connection(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # -- plumbing --

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("content-length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if path.startswith("/_simulator/"):
            self._control(path, raw_body)
            return
        config = self.simulator.config
        record = self.simulator._record_request(
            method=self.command, path=path, headers=dict(self.headers.items()), raw_body=raw_body
        )
        self.record = record
        try:
            if config.api_key is not None and not self._authorised(config.api_key):
                raise _RequestRejected(401, b"", "")
            self._route(path, raw_body, config)
        except _RequestRejected as rejection:
            self._respond(rejection.status, rejection.body, rejection.content_type)
            record["outcome"] = "rejected"
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            record["client_disconnected"] = True
            if not record["outcome"].startswith("fault:"):
                record["outcome"] = "client_disconnected"
            self.close_connection = True
        finally:
            record["finished_at"] = time.time()
            self.simulator._count_request(record)

    def _authorised(self, api_key: str) -> bool:
        scheme, _, token = (self.headers.get("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() == api_key

    def _respond(self, status: int, body: bytes, content_type: str, extra_headers: dict | None = None) -> None:
        self.record["status"] = status
        self.send_response(status)
        if content_type:
            self.send_header("content-type", content_type)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _respond_json(self, value: Any, status: int = 200, extra_headers: dict | None = None) -> None:
        self._respond(status, _compact_json(value), "application/json", extra_headers)

    def _start_stream(self, characters: int) -> None:
        self.record["status"] = 200
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("x-accel-buffering", "no")
        self.send_header("x-compute-type", "gpu+optimized")
        self.send_header("x-compute-characters", str(characters))
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _send(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if self.simulator.timing:
            self._stamp_sent(data)

    def _token_sent(self, data: bytes, tokens_sent: int) -> None:
        """The pacer wrote a token event of this request (on its thread; timing mode only)."""
        self._stamp_sent(data)
        self.record["tokens_sent"] = tokens_sent

    def _stamp_sent(self, data: bytes) -> None:
        if data is not SSE_DONE and b'"content"' in data:
            self.record.setdefault("sent_at", []).append(time.monotonic())

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _pause(self, seconds: float, *, keepalive_s: float | None = None, streaming: bool = False) -> None:
        """Sleep, noticing promptly when the client hangs up; send keep-alive comments if asked."""
        deadline = time.monotonic() + seconds
        last_sent = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            if self.simulator._stopping.is_set():
                raise _ClientGone
            if streaming and keepalive_s and time.monotonic() - last_sent >= keepalive_s:
                self._send(SSE_KEEPALIVE)
                last_sent = time.monotonic()
            if self._poller.poll(min(remaining, 0.05) * 1000):
                if peer_closed(self.connection):
                    raise _ClientGone
                time.sleep(min(remaining, 0.05))  # the client sent more bytes (pipelining): not a hang-up

    # -- routes --

    def _route(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        routes = {
            ("GET", "/"): self._health,
            ("GET", "/health"): self._health,
            ("GET", "/ping"): self._health,
            ("GET", "/info"): self._info,
            ("GET", "/v1/models"): self._models,
            ("GET", "/metrics"): self._metrics,
            ("POST", "/tokenize"): self._tokenize,
            ("POST", "/generate"): self._generate,
            ("POST", "/generate_stream"): self._generate,
            ("POST", "/"): self._generate,
            ("POST", "/v1/chat/completions"): self._chat,
        }
        handler = routes.get((self.command, path))
        if config.openai_only and path not in ("/v1/chat/completions", "/v1/models"):
            raise _RequestRejected(404, b"", "")  # a plain OpenAI-compatible server: no TGI routes
        if handler is None:
            known_path = any(route_path == path for _, route_path in routes)
            raise _RequestRejected(405 if known_path else 404, b"", "")
        handler(path, raw_body, config)

    def _health(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        if config.healthy:
            self._respond(200, b"", "")
        else:
            self._respond_json({"error": "unhealthy", "error_type": "healthcheck"}, status=503)

    def _info(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        self._respond_json(
            {
                "model_id": config.model_id,
                "model_sha": "0e9e39f249a16976918f6564b8830bc894c89659",
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": 128,
                "max_best_of": 2,
                "max_stop_sequences": MAX_STOP_SEQUENCES,
                "max_input_tokens": config.max_input_tokens,
                "max_total_tokens": config.max_total_tokens,
                "validation_workers": 2,
                "max_client_batch_size": 4,
                "router": "text-generation-router",
                "version": TGI_VERSION,
                "sha": None,
                "docker_label": None,
            }
        )

    def _models(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        self._respond_json(
            {
                "object": "list",
                "data": [{"id": config.model_id, "object": "model", "created": 0, "owned_by": config.model_id}],
            }
        )

    def _metrics(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        counts = self.simulator._metrics_snapshot()
        lines = [
            "# TYPE tgi_request_count counter",
            f"tgi_request_count {counts['count']}",
            "# TYPE tgi_request_success counter",
            f"tgi_request_success {counts['success']}",
            "# TYPE tgi_request_failure counter",
            f'tgi_request_failure{{err="validation"}} {counts["failure_validation"]}',
            f'tgi_request_failure{{err="overloaded"}} {counts["failure_overloaded"]}',
            f'tgi_request_failure{{err="generation"}} {counts["failure_generation"]}',
            "# TYPE tgi_queue_size gauge",
            "tgi_queue_size 0",
            "# TYPE tgi_batch_current_size gauge",
            f"tgi_batch_current_size {counts['in_flight']}",
        ]
        self._respond(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")

    def _json_body(self, raw_body: bytes, required: tuple[str, ...]) -> dict:
        content_type = (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if not (content_type == "application/json" or content_type.endswith("+json")):
            raise _text_error(415, "Expected request with `Content-Type: application/json`")
        try:
            body = json.loads(raw_body)
        except ValueError as error:
            detail = f"{error.msg} at line {error.lineno} column {error.colno}" if hasattr(error, "msg") else error
            raise _text_error(400, f"Failed to parse the request body as JSON: {detail}") from None
        if not isinstance(body, dict):
            raise _text_error(422, "Failed to deserialize the JSON body into the target type: expected a map")
        for field_name in required:
            if field_name not in body:
                raise _missing_field(field_name, raw_body)
        return body

    def _tokenize(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        body = self._json_body(raw_body, ("inputs",))
        tokens = [{"id": BOS[0], "text": BOS[1], "start": 0, "stop": 0}]
        tokens += [
            {"id": simulated_token_id(piece), "text": piece, "start": start, "stop": stop}
            for piece, start, stop in simulated_tokens(str(body["inputs"]))
        ]
        self._respond_json(tokens)

    # -- generation --

    def _fault_for_this_request(self, config: SimulatorConfig) -> str | None:
        if config.fail_first_n > 0:
            if self.simulator._take_failure(config.fail_first_n):
                return config.fault or "unavailable_503"
            return None
        return config.fault

    def _recording(self, config: SimulatorConfig, prompt: str = "") -> Recording:
        for key, text in (config.script_replies or {}).items():
            if key in prompt:
                return _script_recording(text)
        if config.script_text is not None:
            return _script_recording(config.script_text)
        return load_recording(config.recording)

    def _chat(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        body = self._json_body(raw_body, ("messages",))
        messages = body["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _text_error(422, "Failed to deserialize the JSON body into the target type: messages: invalid type")
        stream = bool(body.get("stream"))
        requested_model = body.get("model")
        if config.required_model is not None and requested_model != config.required_model:
            message = f"model '{requested_model}' not found"
            raise _RequestRejected(404, _compact_json({"error": message}), "application/json")
        served_model = config.model_id if requested_model in (None, "tgi") else requested_model
        self.record["adapter_id"] = None if requested_model in (None, "tgi") else requested_model
        prompt_tokens = _chat_prompt_tokens(messages)
        self.record["prompt_tokens"] = prompt_tokens

        fault = self._fault_for_this_request(config)
        if fault in _FAULT_RESPONSES:
            self._reject_with_fault(fault)
            return
        try:
            max_new_tokens = _validate_chat(body, prompt_tokens, config)
        except _ValidationFailed as failure:
            self.record["outcome"] = "validation_error"
            message = f"Input validation error: {failure}"
            if not stream:
                raise _json_error(422, message, "validation") from None
            self._start_stream(characters=len(raw_body))
            self._send(_sse_event({"error": {"message": message, "http_status_code": 422}}))
            self._send(SSE_DONE)
            self._end_stream()
            return

        recording = self._recording(config, prompt=str(messages[-1].get("content", "")) if messages else "")
        chunks = _limit_chunks(recording.chunks, max_new_tokens=max_new_tokens, stop=_stop_list(body.get("stop")))
        created = (chunks[-1].created if chunks else None) or recording.created

        def chat_chunk(chunk: Chunk) -> dict:
            return {
                "object": "chat.completion.chunk",
                "id": "",
                "created": chunk.created or created,
                "model": served_model,
                "system_fingerprint": recording.system_fingerprint,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": chunk.text},
                        "logprobs": None,
                        "finish_reason": _chat_finish(chunk.finish),
                    }
                ],
                "usage": None,
            }

        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(chunks),
            "total_tokens": prompt_tokens + len(chunks),
        }
        if not stream:
            self._generate_silently(config, fault, len(chunks))
            text = "".join(chunk.text for chunk in chunks)
            self._respond_json(
                {
                    "object": "chat.completion",
                    "id": "",
                    "created": created,
                    "model": served_model,
                    "system_fingerprint": recording.system_fingerprint,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": _chat_finish(chunks[-1].finish if chunks else None),
                        }
                    ],
                    "usage": usage,
                }
            )
            self.record["tokens_sent"] = len(chunks)
            self.record["outcome"] = "completed"
            return

        if recording.wire_route == "chat" and recording.name != "script":
            events = [(event, event != SSE_DONE) for event in recording.wire_events]
        else:
            events = [(_sse_event(chat_chunk(chunk)), True) for chunk in chunks]
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            if include_usage:
                events.append(
                    (
                        _sse_event(
                            {
                                "object": "chat.completion.chunk",
                                "id": "",
                                "created": created,
                                "model": served_model,
                                "system_fingerprint": recording.system_fingerprint,
                                "choices": [],
                                "usage": usage,
                            }
                        ),
                        False,
                    )
                )
            events.append((SSE_DONE, False))
        midstream_error = [
            _sse_event({"error": {"message": _MIDSTREAM_ERROR, "http_status_code": 422}}),
            SSE_DONE,
        ]
        self._stream_events(events, config, fault, midstream_error, characters=len(raw_body))

    def _generate(self, path: str, raw_body: bytes, config: SimulatorConfig) -> None:
        body = self._json_body(raw_body, ("inputs",))
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _text_error(422, "Failed to deserialize the JSON body into the target type: parameters: invalid type")
        stream = path == "/generate_stream" or (path == "/" and bool(body.get("stream")))
        inputs = str(body["inputs"])
        prompt_tokens = 1 + len(simulated_tokens(inputs))
        self.record["adapter_id"] = parameters.get("adapter_id")
        self.record["prompt_tokens"] = prompt_tokens

        fault = self._fault_for_this_request(config)
        if fault in _FAULT_RESPONSES:
            self._reject_with_fault(fault)
            return
        try:
            max_new_tokens = _validate_generate(parameters, prompt_tokens, config, stream=stream)
        except _ValidationFailed as failure:
            self.record["outcome"] = "validation_error"
            message = f"Input validation error: {failure}"
            if not stream:
                raise _json_error(422, message, "validation") from None
            self._start_stream(characters=len(inputs))
            self._send(_sse_event({"error": message, "error_type": "validation"}))
            self._end_stream()
            return

        recording = self._recording(config, prompt=inputs)
        chunks = _limit_chunks(recording.chunks, max_new_tokens=max_new_tokens, stop=_stop_list(parameters.get("stop")))
        # TGI's compat route defaults return_full_text to true for a "text-generation" model.
        return_full_text = parameters.get("return_full_text")
        if return_full_text is None:
            return_full_text = path == "/"
        generated_text = "".join(chunk.text for chunk in chunks)
        if return_full_text:
            generated_text = inputs + generated_text
        finish = chunks[-1].finish if chunks else "length"
        seed = parameters.get("seed") if parameters.get("do_sample") or parameters.get("temperature") else None
        tokens = [_generate_token(chunk) for chunk in chunks]

        if not stream:
            self._generate_silently(config, fault, len(chunks))
            response: dict[str, Any] = {"generated_text": generated_text}
            if parameters.get("details"):
                response["details"] = {
                    "finish_reason": finish,
                    "generated_tokens": len(chunks),
                    "seed": seed,
                    "prefill": [],
                    "tokens": tokens,
                }
            headers = {"x-prompt-tokens": str(prompt_tokens), "x-generated-tokens": str(len(chunks))}
            self._respond_json([response] if path == "/" else response, extra_headers=headers)
            self.record["tokens_sent"] = len(chunks)
            self.record["outcome"] = "completed"
            return

        if recording.wire_route == "generate" and recording.name != "script":
            events = [(event, True) for event in recording.wire_events]
        else:
            events = []
            for index, (_chunk, token) in enumerate(zip(chunks, tokens, strict=True), start=1):
                last = index == len(chunks)
                details = None
                if last and parameters.get("details"):
                    details = {
                        "finish_reason": finish,
                        "generated_tokens": len(chunks),
                        "seed": seed,
                        "input_length": prompt_tokens,
                    }
                event = {
                    "index": index,
                    "token": token,
                    "generated_text": generated_text if last else None,
                    "details": details,
                }
                events.append((_sse_event(event), True))
        midstream_error = [_sse_event({"error": _MIDSTREAM_ERROR, "error_type": "generation"})]
        self._stream_events(events, config, fault, midstream_error, characters=len(inputs))

    def _reject_with_fault(self, fault: str) -> None:
        status, message, error_type = _FAULT_RESPONSES[fault]
        self._respond_json({"error": message, "error_type": error_type}, status=status)
        self.record["outcome"] = f"fault:{fault}"

    def _generate_silently(self, config: SimulatorConfig, fault: str | None, token_count: int) -> None:
        """The non-streaming path: wait for the whole generation, or apply a fault before any header."""
        if fault == "stall":
            self.record["outcome"] = "fault:stall"
            self._pause(config.stall_s)
            self._drop()
            raise _ClientGone
        if fault == "drop_connection":
            self.record["outcome"] = "fault:drop_connection"
            self._drop()
            raise _ClientGone
        if fault == "error_midstream":
            self.record["outcome"] = "fault:error_midstream"
            raise _json_error(424, _MIDSTREAM_ERROR, "generation")
        per_token = 1 / config.tokens_per_s if config.tokens_per_s else 0.0
        self._pause(config.ttft_s + per_token * max(token_count - 1, 0))

    def _stream_events(
        self,
        events: list[tuple[bytes, bool]],
        config: SimulatorConfig,
        fault: str | None,
        midstream_error: list[bytes],
        *,
        characters: int,
    ) -> None:
        """Send (event, is_token) pairs with TTFT and token pacing; apply a mid-stream fault when due."""
        self._start_stream(characters=characters)
        self.record["outcome"] = "streaming"
        fault_at = config.fault_position() if fault else None
        per_token = 1 / config.tokens_per_s if config.tokens_per_s else 0.0
        sent_tokens = 0
        start = 0
        if self.simulator.timing and fault_at is None and per_token and not config.keepalive_s:
            # The bench's plain streams: paced by one thread for all (devtools.tgi_pacing), not by this one.
            paced = self.simulator._pacer.pace(
                self.connection,
                events,
                first_token_after_s=config.ttft_s,
                per_token_s=per_token,
                on_token_sent=self._token_sent,
            )
            if paced.gone:
                raise _ClientGone
            if paced.pending:
                self.wfile.write(paced.pending)
            start, sent_tokens = paced.next_index, paced.tokens_sent
        for event, is_token in events[start:]:
            # A fault due after more tokens than the answer has happens at the end, before [DONE].
            if fault_at is not None and (sent_tokens == fault_at or not is_token):
                self._apply_stream_fault(fault, config, midstream_error)
                return
            if is_token:
                wait = config.ttft_s if sent_tokens == 0 else per_token
                if wait:
                    self._pause(wait, keepalive_s=config.keepalive_s, streaming=True)
            self._send(event)
            if is_token:
                sent_tokens += 1
                self.record["tokens_sent"] = sent_tokens
        if fault_at is not None:
            self._apply_stream_fault(fault, config, midstream_error)
            return
        self._end_stream()
        self.record["outcome"] = "completed"

    def _apply_stream_fault(self, fault: str | None, config: SimulatorConfig, midstream_error: list[bytes]) -> None:
        self.record["outcome"] = f"fault:{fault}"
        if fault == "error_midstream":
            for event in midstream_error:
                self._send(event)
            self._end_stream()
        elif fault == "stall":
            self._pause(config.stall_s)
            self._drop()
        elif fault == "drop_connection":
            self._drop()

    # -- control --

    def _control(self, path: str, raw_body: bytes) -> None:
        self.record = {}
        try:
            if path == "/_simulator/requests" and self.command == "GET":
                self._respond_json(self.simulator.requests)
            elif path == "/_simulator/reset" and self.command == "POST":
                self.simulator.reset()
                self._respond_json(dataclasses.asdict(self.simulator.config))
            elif path == "/_simulator/config" and self.command == "POST":
                changes = json.loads(raw_body or b"{}")
                refuse_s = changes.pop("refuse_connections_s", None)
                config = self.simulator.configure(**changes)
                self._respond_json(dataclasses.asdict(config))
                if refuse_s:
                    self.close_connection = True
                    threading.Thread(
                        target=self.simulator._refuse_connections_for, args=(float(refuse_s),), daemon=True
                    ).start()
            elif path == "/_simulator/config" and self.command == "GET":
                self._respond_json(dataclasses.asdict(self.simulator.config))
            else:
                self._respond(404, b"", "")
        except (TypeError, ValueError) as error:
            self._respond(400, str(error).encode(), "text/plain; charset=utf-8")


def _chat_finish(finish: str | None) -> str | None:
    if finish in ("eos_token", "stop_sequence"):
        return "stop"
    return finish


def _generate_token(chunk: Chunk) -> dict:
    if chunk.finish == "eos_token" and not chunk.text:
        return {"id": EOT[0], "text": EOT[1], "logprob": -0.0001, "special": True}
    return {
        "id": chunk.token_id if chunk.token_id is not None else simulated_token_id(chunk.text),
        "text": chunk.text,
        "logprob": chunk.logprob if chunk.logprob is not None else _logprob(chunk.text),
        "special": False,
    }


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _limit_chunks(chunks: tuple[Chunk, ...], *, max_new_tokens: int, stop: list[str]) -> list[Chunk]:
    """Cut the answer where TGI would: at a stop sequence, or after max_new_tokens tokens."""
    limited: list[Chunk] = []
    text = ""
    for chunk in chunks:
        text += chunk.text
        if len(limited) + 1 == max_new_tokens and chunk.finish is None:
            limited.append(dataclasses.replace(chunk, finish="length"))
            return limited
        if stop and any(sequence in text for sequence in stop) and chunk.finish is None:
            limited.append(dataclasses.replace(chunk, finish="stop_sequence"))
            return limited
        limited.append(chunk)
        if chunk.finish is not None:
            return limited
    return limited


def _chat_prompt_tokens(messages: list[dict]) -> int:
    count = 1 + CHAT_GENERATION_PROMPT_TOKENS + LLAMA31_DATE_HEADER_TOKENS
    if not messages or messages[0].get("role") != "system":
        count += CHAT_MESSAGE_OVERHEAD_TOKENS
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        count += CHAT_MESSAGE_OVERHEAD_TOKENS + len(simulated_tokens(str(content)))
    return count


def _validate_common(
    *,
    temperature: Any,
    top_p: Any,
    max_new_tokens: Any,
    stop: list[str],
    prompt_tokens: int,
    config: SimulatorConfig,
) -> int:
    if temperature is not None and temperature <= 0:
        raise _ValidationFailed("`temperature` must be strictly positive")
    if top_p is not None and not 0.0 < top_p < 1.0:
        raise _ValidationFailed("`top_p` must be > 0.0 and < 1.0")
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise _ValidationFailed("`max_new_tokens` must be strictly positive")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise _ValidationFailed(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}")
    if prompt_tokens > config.max_input_tokens:
        raise _ValidationFailed(f"`inputs` tokens must be <= {config.max_input_tokens}. Given: {prompt_tokens}")
    if max_new_tokens is None:
        return max(config.max_total_tokens - prompt_tokens, 1)
    if prompt_tokens + max_new_tokens > config.max_total_tokens:
        raise _ValidationFailed(
            f"`inputs` tokens + `max_new_tokens` must be <= {config.max_total_tokens}. "
            f"Given: {prompt_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )
    return max_new_tokens


def _validate_chat(body: dict, prompt_tokens: int, config: SimulatorConfig) -> int:
    temperature = body.get("temperature")
    if temperature == 0:
        temperature = None  # TGI's chat route turns temperature 0 into greedy decoding
    return _validate_common(
        temperature=temperature,
        top_p=body.get("top_p"),
        max_new_tokens=body.get("max_tokens"),
        stop=_stop_list(body.get("stop")),
        prompt_tokens=prompt_tokens,
        config=config,
    )


def _validate_generate(parameters: dict, prompt_tokens: int, config: SimulatorConfig, *, stream: bool) -> int:
    if stream and parameters.get("decoder_input_details"):
        raise _ValidationFailed("`decoder_input_details` == true is not supported when streaming tokens")
    return _validate_common(
        temperature=parameters.get("temperature"),
        top_p=parameters.get("top_p"),
        max_new_tokens=parameters.get("max_new_tokens"),
        stop=_stop_list(parameters.get("stop")),
        prompt_tokens=prompt_tokens,
        config=config,
    )


# --- the simulator object -------------------------------------------------------------------------


@dataclass
class _Counters:
    count: int = 0
    success: int = 0
    failure_validation: int = 0
    failure_overloaded: int = 0
    failure_generation: int = 0
    in_flight: int = 0
    failures_served: int = 0
    next_request_id: int = 1
    open_connections: set = field(default_factory=set)


class TGISimulator:
    """A TGI server simulator on 127.0.0.1; see the module docstring."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None, timing: bool = False
    ) -> None:
        self.host = host
        self.port = port
        # For benchmarks: each recorded request also holds `mono_started` (time.monotonic() when it arrived) and
        # `sent_at` (time.monotonic() right after each token event was written to the unbuffered socket), and
        # leaves out the raw body and headers. time.monotonic() is one clock for every process on the host, so a
        # client's receive time of a token can be subtracted from its send time.
        self.timing = timing
        self._config = config or SimulatorConfig()
        self._lock = threading.Lock()
        self._requests: deque[dict] = deque(maxlen=2000)
        self._counters = _Counters()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._pacer = Pacer(self._stopping)

    # lifecycle

    def start(self) -> TGISimulator:
        self._stopping.clear()
        self.start_listening()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.stop_listening()

    def __enter__(self) -> TGISimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start_listening(self) -> None:
        """Listen again on the same port (the first call picks the port when it is 0)."""
        if self._server is not None:
            return
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="tgi-simulator",
        )
        self._thread.start()

    def stop_listening(self, *, drop_open_connections: bool = True) -> None:
        """Close the listening socket so new connections are refused, like TGI while the model loads.

        Open connections (keep-alive or mid-stream) are dropped too, as a restarting TGI would drop them.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if drop_open_connections:
            with self._lock:
                connections = list(self._counters.open_connections)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def _refuse_connections_for(self, seconds: float) -> None:
        time.sleep(0.05)  # let the reply to the control request go out first
        self.stop_listening()
        time.sleep(seconds)
        if not self._stopping.is_set():
            self.start_listening()

    # configuration

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change some settings (see `SimulatorConfig`); the others keep their values."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(SimulatorConfig)}
        if unknown:
            raise ValueError(f"unknown simulator settings: {sorted(unknown)}")
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "fail_first_n" in changes or "fault" in changes:
                self._counters.failures_served = 0
            return self._config

    def reset(self) -> None:
        """Default configuration, no recorded requests, fresh counters."""
        with self._lock:
            self._config = SimulatorConfig()
            self._requests.clear()
            open_connections = self._counters.open_connections
            self._counters = _Counters(open_connections=open_connections)

    # observation

    @property
    def requests(self) -> list[dict]:
        """Recent requests, oldest first: method, path, headers (lower-case names), body (parsed JSON or
        None), raw_body, adapter_id, prompt_tokens, status, outcome, tokens_sent, started_at, finished_at."""
        with self._lock:
            return [dict(record) for record in self._requests]

    def generation_requests(self) -> list[dict]:
        return [record for record in self.requests if record["path"] in GENERATION_PATHS]

    def wait_for(self, predicate: Any, *, timeout_s: float = 5.0) -> bool:
        """Poll `predicate(requests)` until it is true or the time is up; returns its last value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.requests):
                return True
            time.sleep(0.01)
        return bool(predicate(self.requests))

    # used by the handler threads

    def _record_request(self, *, method: str, path: str, headers: dict, raw_body: bytes) -> dict:
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        with self._lock:
            record = {
                "id": self._counters.next_request_id,
                "method": method,
                "path": path,
                "headers": {name.lower(): value for name, value in headers.items()},
                "body": body,
                "raw_body": raw_body.decode(errors="replace"),
                "adapter_id": None,
                "prompt_tokens": None,
                "status": None,
                "outcome": "received",
                "tokens_sent": 0,
                "client_disconnected": False,
                "started_at": time.time(),
                "finished_at": None,
            }
            if self.timing:
                record["mono_started"] = time.monotonic()
                del record["raw_body"], record["headers"]
            self._counters.next_request_id += 1
            self._requests.append(record)
            if path in GENERATION_PATHS:
                self._counters.in_flight += 1
        return record

    def _count_request(self, record: dict) -> None:
        if record["path"] not in GENERATION_PATHS:
            return
        with self._lock:
            counters = self._counters
            counters.in_flight = max(counters.in_flight - 1, 0)
            counters.count += 1
            outcome = record["outcome"]
            if outcome == "completed":
                counters.success += 1
            elif outcome == "validation_error":
                counters.failure_validation += 1
            elif outcome == "fault:overloaded_429":
                counters.failure_overloaded += 1
            elif outcome.startswith("fault:"):
                counters.failure_generation += 1

    def _metrics_snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                f.name: getattr(self._counters, f.name)
                for f in dataclasses.fields(_Counters)
                if f.name != "open_connections"
            }

    def _take_failure(self, fail_first_n: int) -> bool:
        with self._lock:
            if self._counters.failures_served < fail_first_n:
                self._counters.failures_served += 1
                return True
            return False

    def _track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._counters.open_connections.add(connection)
            else:
                self._counters.open_connections.discard(connection)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a TGI simulator (for tests, benchmarks and demos).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tps", type=float, default=None, help="tokens per second (default: no pacing)")
    parser.add_argument("--recording", choices=RECORDINGS, default="llama31_deep_learning")
    parser.add_argument("--script-text", default=None, help="answer this text instead of a recording")
    parser.add_argument("--max-input-tokens", type=int, default=8191)
    parser.add_argument("--max-total-tokens", type=int, default=8192)
    parser.add_argument("--api-key", default=None, help="require this bearer token, like TGI's --api-key")
    parser.add_argument("--timing", action="store_true", help="record when each request came and each token left")
    args = parser.parse_args(argv)
    config = SimulatorConfig(
        ttft_s=args.ttft,
        tokens_per_s=args.tps,
        recording=args.recording,
        script_text=args.script_text,
        max_input_tokens=args.max_input_tokens,
        max_total_tokens=args.max_total_tokens,
        api_key=args.api_key,
    )
    simulator = TGISimulator(host=args.host, port=args.port, config=config, timing=args.timing).start()
    print(f"TGI simulator listening on {simulator.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
