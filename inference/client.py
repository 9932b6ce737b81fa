"""The one module that talks HTTP to the model server (Hugging Face TGI, or any OpenAI-compatible server).

Synchronous on purpose: it runs inside Celery thread-pool workers.

    settings = GenerationSettings(endpoint="http://tgi:8080", adapter_id="acme-support", max_new_tokens=512)
    for event in stream_chat(settings, messages, should_stop=lambda: cancelled):
        if isinstance(event, StreamDelta): ...      # a piece of the answer
        else: ...                                  # StreamEnd: finish_reason "stop" | "length" | "stopped"

    model_info(endpoint) -> ModelInfo         # GET /info, cached per endpoint; defaults for non-TGI servers
    count_tokens(endpoint, text) -> int       # POST /tokenize, or a conservative estimate
    model_server_health(endpoint) -> "ok" | "unreachable" | "unhealthy"

Every failure surfaces as `ModelServerError` with a `kind` ("unreachable", "timeout", "overloaded",
"unavailable", "unauthorized", "validation", "generation", "stream_error", "bad_response") and `retryable`.
`stream_chat` retries with exponential backoff only while nothing has been yielded; once text has gone out, a
failure raises at once so the caller can keep the partial answer and end the message in an error state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import httpx2
from huggingface_hub import InferenceClient, InferenceTimeoutError
from huggingface_hub.utils import hf_raise_for_status

from inference import chat_events, stream_reader
from inference.errors import ModelServerError, model_server_error

logger = logging.getLogger(__name__)

# huggingface_hub sends the local HF token (HF_TOKEN or `hf auth login`) when no key is given; a placeholder
# keeps a developer's Hub credentials away from whatever host the endpoint points at.
NO_API_KEY = "-"
TGI_MAX_STOP_SEQUENCES = 4
# For servers without /info: small enough for any Llama-class model we would serve.
FALLBACK_MODEL_INFO_LIMITS = (4095, 4096)
UNKNOWN_MODEL_ID = "unknown"
_MAX_BACKOFF_S = 8.0
# How often a retry's wait asks `should_stop`. `should_stop` must be cheap (cache it) at this rate.
STOP_POLL_S = 0.01
# How often an open stream asks `should_stop` while it waits on the network, so a stop does not wait for the model's
# next token. A caller that hears of stop requests calls `stop_checks_now()`, and the streams ask at once: asking
# every 10 ms instead cost a worker 11 ms of CPU per second whenever a stream was open (one thread waking 100
# times a second), 0.2 ms per token of a lone 50-token/s answer.
STOP_WATCH_POLL_S = 0.25
_ROUGH_PIECES = re.compile(r" ?[^\W\d_]+|\d{1,3}| ?[^\w\s]|_|\s+")


@dataclass(frozen=True)
class GenerationSettings:
    """How to reach the model server and how to sample.

    `adapter_id` is the LoRA adapter name on TGI (sent as the OpenAI `model` field; None means the base
    model), or the served model name on other OpenAI-compatible servers. `model` is the name sent when there is
    no adapter: "tgi" for TGI, the served model's name for llama-server, Ollama or vLLM. `timeout_s` is per read
    (connect, each chunk), not for the whole answer. `connect_retries` is how many times a failure before the first
    token is retried.
    """

    endpoint: str
    adapter_id: str | None = None
    model: str = "tgi"
    temperature: float | None = 0.3
    top_p: float | None = None
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    api_key: str | None = None
    timeout_s: float = 30.0
    connect_retries: int = 3
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError("max_new_tokens must be positive")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0 means greedy)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if len(self.stop) > TGI_MAX_STOP_SEQUENCES:
            raise ValueError(f"TGI accepts at most {TGI_MAX_STOP_SEQUENCES} stop sequences")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    max_input_tokens: int
    max_total_tokens: int


@dataclass(frozen=True)
class StreamDelta:
    text: str


@dataclass(frozen=True)
class StreamEnd:
    """The end of an answer.

    finish_reason: "stop" (end of answer or stop sequence), "length" (max_new_tokens), "stopped" (should_stop()
    said so), or the server's own word for anything else. Token counts come from the server's usage report and
    are None when it sent none.
    """

    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


# --- streaming ------------------------------------------------------------------------------------


def stream_chat(
    settings: GenerationSettings,
    messages: list[dict[str, str]],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[StreamDelta | StreamEnd]:
    """Stream an answer through the Messages API: StreamDelta pieces, then exactly one StreamEnd.

    Raises ModelServerError. Closing the generator early closes the HTTP stream, which makes TGI stop
    generating.
    """
    yield from _attempts(settings, messages, should_stop=should_stop, on_delta=None)


def stream_chat_to(
    settings: GenerationSettings,
    messages: list[dict[str, str]],
    on_delta: Callable[[str], bool],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> StreamEnd | None:
    """Stream an answer as `stream_chat` does, but hand each piece of text to `on_delta` as it arrives, on the
    process's model-stream reader thread (inference.stream_reader), and return the StreamEnd once the answer is
    over. The calling thread sleeps meanwhile: one thread reads every stream of the process, so a token does not
    wake a thread of its own.

    `on_delta` must be quick and must not block (every stream of the process waits while it runs); it returns
    True to hang up (the answer has said enough), and `stream_chat_to` then returns None. An exception it raises
    is raised here as it is. Raises ModelServerError as `stream_chat` does, with the same retries before the first
    piece.
    """
    end: StreamEnd | None = None
    for event in _attempts(settings, messages, should_stop=should_stop, on_delta=on_delta):
        end = event
    return end


def _attempts(
    settings: GenerationSettings,
    messages: list[dict[str, str]],
    *,
    should_stop: Callable[[], bool] | None,
    on_delta: Callable[[str], bool] | None,
) -> Iterator[StreamDelta | StreamEnd]:
    """The answer's stream, retried with backoff while nothing has been delivered."""
    attempt = 0
    while True:
        if should_stop is not None and should_stop():
            yield StreamEnd(finish_reason="stopped")
            return
        reading = chat_events.ChatReading()
        try:
            with contextlib.closing(
                _stream_once(settings, messages, reading=reading, should_stop=should_stop, on_delta=on_delta)
            ) as events:
                yield from events
            return
        except ModelServerError as error:
            if reading.text_was_yielded or not error.retryable or attempt >= settings.connect_retries:
                raise
            delay = _backoff_delay(settings.backoff_s, attempt)
            attempt += 1
            logger.warning(
                "model server %s failed before the first token (%s); retry %d/%d in %.1fs",
                settings.endpoint,
                error,
                attempt,
                settings.connect_retries,
                delay,
            )
            if _sleep_unless_stopped(delay, should_stop):
                yield StreamEnd(finish_reason="stopped")
                return


def _stream_once(
    settings: GenerationSettings,
    messages: list[dict[str, str]],
    *,
    reading: chat_events.ChatReading,
    should_stop: Callable[[], bool] | None,
    on_delta: Callable[[str], bool] | None,
) -> Iterator[StreamDelta | StreamEnd]:
    # The client must stay referenced while iterating: garbage-collecting it closes the stream (its ExitStack).
    client = _ModelServerInferenceClient(
        base_url=settings.endpoint, api_key=settings.api_key or NO_API_KEY, timeout=settings.timeout_s
    )
    watcher = _StopWatcher(should_stop, on_stop=client.hang_up) if should_stop is not None else None
    try:
        # Builds and sends the request and checks its status; returns a generator parsing the events, left unread.
        client.chat_completion(
            messages,
            model=settings.adapter_id or settings.model or "tgi",
            stream=True,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=_top_p_for_tgi(settings.top_p),
            stop=list(settings.stop) or None,
            seed=settings.seed,
            stream_options={"include_usage": True},
        )
        # InferenceClient built and sent the request, and checked its status; its parse of each event (a dataclass
        # per event, deep-copied at every level) cost about 170 µs of CPU per token, three quarters of a worker's
        # cost per streamed token (bench/). The events are read here from the same lines instead, with the same
        # rules (`chat_events.chat_stream_event`).
        if on_delta is None:
            for chunk in chat_events.chat_stream_events(client.stream_lines):
                if watcher is not None and (watcher.stopped or should_stop()):
                    client.close()
                    yield StreamEnd(finish_reason="stopped", model=reading.model)
                    return
                for content in reading.contents(chunk):
                    yield StreamDelta(text=content)
        else:
            delivery = chat_events.Delivery(reading, on_delta, should_stop, watcher)
            body = stream_reader.response_body(client._response)
            if body is not None:
                stream_reader.read_lines(body, delivery.on_line, timeout_s=settings.timeout_s)
            else:
                for line in client.stream_lines:
                    if delivery.on_line(line):
                        break
            if delivery.stopped:
                client.close()
                yield StreamEnd(finish_reason="stopped", model=reading.model)
                return
            if delivery.enough:
                return
    except Exception as error:
        if isinstance(error, chat_events.DeliveryFailed):
            raise error.__cause__ from None  # type: ignore[misc]
        if watcher is not None and watcher.stopped:
            # The watcher hung up on a stream waiting for its next token: whatever broke, it was us.
            yield StreamEnd(finish_reason="stopped", model=reading.model)
            return
        if isinstance(error, json.JSONDecodeError):
            # Some OpenAI-compatible servers end with `data:[DONE]` (no space); huggingface_hub cannot parse it.
            if reading.finish_reason is None:
                kind = "stream_error" if reading.text_was_yielded else "bad_response"
                raise ModelServerError(kind, f"unparseable stream event: {error}") from error
        elif isinstance(error, httpx2.HTTPError | ValueError):
            raise model_server_error(error, text_was_yielded=reading.text_was_yielded) from error
        else:
            raise
    finally:
        if watcher is not None:
            watcher.cancel()
        client.close()
    if watcher is not None and watcher.stopped and reading.finish_reason is None:
        yield StreamEnd(finish_reason="stopped", model=reading.model)
        return
    if reading.finish_reason is None:
        kind = "stream_error" if reading.text_was_yielded else "bad_response"
        raise ModelServerError(kind, "the stream ended without a finish reason")
    usage = reading.usage
    yield StreamEnd(
        finish_reason=reading.finish_reason,
        prompt_tokens=usage.get("prompt_tokens") if usage else None,
        completion_tokens=usage.get("completion_tokens") if usage else None,
        model=reading.model,
    )


def stop_checks_now() -> None:
    """Have every open stream of this process ask its `should_stop` now, not at its next token or poll: for a
    caller that has just heard of a stop request."""
    _watching.check_now()


class _StopWatcher:
    """Asks `should_stop` every STOP_WATCH_POLL_S while a stream is open, and at once on `stop_checks_now()`, and
    calls `on_stop` (which hangs up) when it says yes. Checking only when a token arrives would let a slow model
    hold a stop request for as long as it takes to send its next token, or its first. One thread per process
    watches every open stream."""

    def __init__(self, should_stop: Callable[[], bool], *, on_stop: Callable[[], None]) -> None:
        self.stopped = False
        self.should_stop = should_stop
        self.on_stop = on_stop
        _watching.add(self)

    def cancel(self) -> None:
        _watching.discard(self)


class _Watching:
    def __init__(self) -> None:
        self._watchers: set[_StopWatcher] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._check_now = False

    def add(self, watcher: _StopWatcher) -> None:
        with self._changed:
            idle = not self._watchers
            self._watchers.add(watcher)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="model-stream-stop-watcher", daemon=True)
                self._thread.start()
            # Woken only from its wait for a first stream: with streams open it polls anyway, and the new one is
            # asked at its next poll. Woken for each stream, it asked every open stream again each time a stream
            # opened: a burst of 50 answers cost 50 wake-ups of a thread that took the interpreter's lock from
            # the threads preparing questions, and 1,275 checks.
            if idle:
                self._changed.notify()

    def discard(self, watcher: _StopWatcher) -> None:
        with self._changed:
            self._watchers.discard(watcher)

    def check_now(self) -> None:
        with self._changed:
            self._check_now = True
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._watchers:
                    self._changed.wait()
                watchers = list(self._watchers)
            for watcher in watchers:
                try:
                    stop = watcher.should_stop()
                except Exception:
                    logger.exception("could not check for a stop request; the stream goes on")
                    continue
                if stop:
                    with self._changed:
                        if watcher not in self._watchers:
                            continue  # the stream ended meanwhile
                        self._watchers.discard(watcher)
                    watcher.stopped = True
                    watcher.on_stop()
            with self._changed:
                if not self._check_now:
                    self._changed.wait(STOP_WATCH_POLL_S)
                self._check_now = False


_watching = _Watching()


class _ModelServerInferenceClient(InferenceClient):
    """InferenceClient sending through Parley's own HTTP session instead of huggingface_hub's shared one.

    The shared session refuses every request when HF_HUB_OFFLINE is set, which knowledge.embeddings sets so
    that the embedding model never reaches for the Hub; our model server is not the Hub. It also caps the pool
    at 100 connections, fewer than the streams a busy worker holds open. Everything else (payload, auth header,
    SSE parsing, error classes) stays huggingface_hub's: this mirrors its `_inner_post` (2.4) for that reason.
    """

    def _inner_post(self, request_parameters, *, stream=False):  # type: ignore[no-untyped-def, override]
        try:
            response = self.exit_stack.enter_context(
                _http_session().stream(
                    "POST",
                    request_parameters.url,
                    json=request_parameters.json,
                    content=request_parameters.data,
                    headers=request_parameters.headers,
                    timeout=self.timeout,
                )
            )
            self._response = response
            hf_raise_for_status(response)
            if not stream:
                return response.read()
            self.stream_lines = response.iter_lines()
            return self.stream_lines
        except httpx2.TimeoutException as error:
            raise InferenceTimeoutError(f"Inference call timed out: {request_parameters.url}") from error

    def hang_up(self) -> None:
        """Shut the stream's socket from another thread: the read waiting for the next token returns at once and
        the server sees the client go (TGI then stops generating)."""
        response = getattr(self, "_response", None)
        network_stream = response.extensions.get("network_stream") if response is not None else None
        sock = network_stream.get_extra_info("socket") if network_stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_session_lock = threading.Lock()
_session: httpx2.Client | None = None


def _http_session() -> httpx2.Client:
    global _session
    with _session_lock:
        if _session is None:
            # No redirects: a redirect must not carry the endpoint's bearer token to another host.
            _session = httpx2.Client(
                follow_redirects=False,
                timeout=None,
                limits=httpx2.Limits(max_connections=2000, max_keepalive_connections=200),
            )
        return _session


def _top_p_for_tgi(top_p: float | None) -> float | None:
    # TGI rejects top_p >= 1.0; 1.0 means "no nucleus filtering", which is what leaving it out does.
    if top_p is None or top_p >= 1.0:
        return None
    return top_p


def _backoff_delay(backoff_s: float, attempt: int) -> float:
    return min(backoff_s * 2**attempt, _MAX_BACKOFF_S)


def _sleep_unless_stopped(seconds: float, should_stop: Callable[[], bool] | None) -> bool:
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if should_stop is not None and should_stop():
            return True
        time.sleep(min(remaining, STOP_POLL_S))
    return should_stop is not None and should_stop()


# --- model info, token counts, health -------------------------------------------------------------

_cache_lock = threading.Lock()
_model_info_cache: dict[str, ModelInfo] = {}
_endpoints_without_tokenize: set[str] = set()


def model_info(
    endpoint: str,
    *,
    api_key: str | None = None,
    timeout_s: float = 5.0,
    retries: int = 0,
    backoff_s: float = 0.5,
    should_stop: Callable[[], bool] | None = None,
) -> ModelInfo:
    """The served model's id and token limits from TGI's GET /info, fetched once per endpoint.

    Servers without /info (other OpenAI-compatible servers) get conservative limits. Raises ModelServerError
    "unreachable"/"timeout" when the server cannot be asked (that is not cached), after `retries` retries with the
    same exponential backoff as `stream_chat`, so that an answer waits as long for a restarting server whether
    or not its limits are already known.
    """
    attempt = 0
    while True:
        try:
            return _model_info_once(endpoint, api_key=api_key, timeout_s=timeout_s)
        except ModelServerError as error:
            if not error.retryable or attempt >= retries:
                raise
            delay = _backoff_delay(backoff_s, attempt)
            attempt += 1
            logger.warning("model server %s: %s; retry %d/%d in %.1fs", endpoint, error, attempt, retries, delay)
            if _sleep_unless_stopped(delay, should_stop):
                raise


def _model_info_once(endpoint: str, *, api_key: str | None, timeout_s: float) -> ModelInfo:
    key = endpoint.rstrip("/")
    with _cache_lock:
        if key in _model_info_cache:
            return _model_info_cache[key]
    try:
        response = httpx.get(f"{key}/info", headers=_auth_headers(api_key), timeout=timeout_s)
    except httpx.TimeoutException as error:
        raise ModelServerError("timeout", f"GET /info: {error}", retryable=True) from error
    except httpx.HTTPError as error:
        raise ModelServerError("unreachable", f"GET /info: {error}", retryable=True) from error
    if response.status_code in (401, 403):
        raise ModelServerError("unauthorized", f"GET /info: HTTP {response.status_code}", status_code=401)
    info = _parse_info(response)
    with _cache_lock:
        _model_info_cache[key] = info
    return info


def _parse_info(response: httpx.Response) -> ModelInfo:
    max_input, max_total = FALLBACK_MODEL_INFO_LIMITS
    if response.status_code != 200:
        logger.info("no TGI /info at %s (HTTP %s); using conservative limits", response.url, response.status_code)
        return ModelInfo(model_id=UNKNOWN_MODEL_ID, max_input_tokens=max_input, max_total_tokens=max_total)
    try:
        payload = response.json()
        return ModelInfo(
            model_id=str(payload["model_id"]),
            max_input_tokens=int(payload["max_input_tokens"]),
            max_total_tokens=int(payload["max_total_tokens"]),
        )
    except (ValueError, KeyError, TypeError):
        logger.info("unexpected /info body at %s; using conservative limits", response.url)
        return ModelInfo(model_id=UNKNOWN_MODEL_ID, max_input_tokens=max_input, max_total_tokens=max_total)


def estimate_tokens(text: str) -> int:
    """An over-estimate of a Llama 3 token count without a tokenizer.

    Prose averages ~4 UTF-8 bytes a token, so a third of the bytes is generous; punctuation-dense text can have
    a token per character, which counting rough word and symbol pieces covers.
    """
    return max(math.ceil(len(text.encode()) / 3), len(_ROUGH_PIECES.findall(text)))


def count_tokens(endpoint: str, text: str, *, api_key: str | None = None, timeout_s: float = 5.0) -> int:
    """The exact token count from TGI's POST /tokenize, or `estimate_tokens` when the server has no /tokenize
    (remembered per endpoint) or does not answer in time."""
    key = endpoint.rstrip("/")
    if not text:
        return 0
    with _cache_lock:
        if key in _endpoints_without_tokenize:
            return estimate_tokens(text)
    try:
        response = httpx.post(
            f"{key}/tokenize", json={"inputs": text}, headers=_auth_headers(api_key), timeout=timeout_s
        )
    except httpx.HTTPError as error:
        logger.info("POST /tokenize at %s failed (%s); estimating", key, error)
        return estimate_tokens(text)
    if response.status_code in (404, 405):
        with _cache_lock:
            _endpoints_without_tokenize.add(key)
        return estimate_tokens(text)
    try:
        tokens = response.json()
        if response.status_code != 200 or not isinstance(tokens, list):
            raise ValueError(f"HTTP {response.status_code}")
    except ValueError as error:
        logger.info("POST /tokenize at %s answered %s; estimating", key, error)
        return estimate_tokens(text)
    return len(tokens)


def model_server_health(endpoint: str, *, api_key: str | None = None, timeout_s: float = 2.0) -> str:
    """ "ok", "unreachable" or "unhealthy", for /healthz.

    Servers without /health (other OpenAI-compatible servers) are asked GET /v1/models instead.
    """
    key = endpoint.rstrip("/")
    try:
        response = httpx.get(f"{key}/health", headers=_auth_headers(api_key), timeout=timeout_s)
        if response.status_code in (404, 405):
            response = httpx.get(f"{key}/v1/models", headers=_auth_headers(api_key), timeout=timeout_s)
    except httpx.HTTPError:
        return "unreachable"
    return "ok" if response.status_code == 200 else "unhealthy"


def forget_endpoint(endpoint: str | None = None) -> None:
    """Drop what is cached about one endpoint (or all), e.g. after its model was changed."""
    with _cache_lock:
        if endpoint is None:
            _model_info_cache.clear()
            _endpoints_without_tokenize.clear()
        else:
            _model_info_cache.pop(endpoint.rstrip("/"), None)
            _endpoints_without_tokenize.discard(endpoint.rstrip("/"))


def _auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
