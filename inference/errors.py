"""The model server's failures as one exception, `ModelServerError`, with a `kind` and whether a retry may help:
translated from what huggingface_hub and httpx2 raise."""

from __future__ import annotations

import contextlib

import httpx2
from huggingface_hub import InferenceTimeoutError
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    OverloadedError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)


class ModelServerError(Exception):
    """The model server failed or could not be reached. `str(error)` is safe to log (no credentials)."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False, status_code: int | None = None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


_STATUS_KINDS = {
    401: ("unauthorized", False),
    403: ("unauthorized", False),
    404: ("bad_response", False),
    422: ("validation", False),
    424: ("generation", False),
    429: ("overloaded", True),
    500: ("generation", False),
    502: ("unavailable", True),
    503: ("unavailable", True),
    504: ("unavailable", True),
}
# TGI's messages for in-stream errors on the chat route, which all come with http_status_code 422.
_MESSAGE_KINDS = (
    ("Input validation error", "validation", False),
    ("Model is overloaded", "overloaded", True),
    ("Request failed during generation", "generation", False),
    ("Incomplete generation", "generation", False),
)


def model_server_error(error: Exception, *, text_was_yielded: bool) -> ModelServerError:
    """Translate huggingface_hub and httpx2 exceptions (PROTOCOL.md §3) into a ModelServerError.

    Once text has been yielded nothing is retryable, and errors inside the stream become "stream_error".
    """
    kind, retryable, status, message = _classify(error)
    if text_was_yielded:
        kind = "timeout" if kind == "timeout" else "stream_error"
        retryable = False
    return ModelServerError(kind, message, retryable=retryable, status_code=status)


def _classify(error: Exception) -> tuple[str, bool, int | None, str]:
    """(kind, retryable before the first token, HTTP status, message) for one exception."""
    if isinstance(error, ModelServerError):
        return error.kind, error.retryable, error.status_code, error.message
    if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException):
        return "timeout", True, None, "no response within the per-read timeout"
    if isinstance(error, ValidationError):
        return "validation", False, 422, str(error)
    if isinstance(error, OverloadedError):
        return "overloaded", True, 429, str(error)
    if isinstance(error, GenerationError | IncompleteGenerationError):
        return "generation", False, None, str(error)
    if isinstance(error, UnknownError):
        # The chat route's in-stream {"error": {"message", "http_status_code"}} arrives as UnknownError(dict).
        payload = error.args[0] if error.args else None
        if isinstance(payload, dict):
            message = str(payload.get("message", payload))
            for prefix, kind, retryable in _MESSAGE_KINDS:
                if message.startswith(prefix):
                    return kind, retryable, payload.get("http_status_code"), message
            return "stream_error", False, payload.get("http_status_code"), message
        return "stream_error", False, None, str(error)
    if isinstance(error, TextGenerationError):
        return "generation", False, None, str(error)
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        kind, retryable = _STATUS_KINDS.get(status, ("unavailable" if (status or 0) >= 500 else "bad_response", False))
        return kind, retryable, status, _http_error_message(error, status)
    if isinstance(error, httpx2.ConnectError):
        return "unreachable", True, None, "connection refused or host unreachable"
    if isinstance(error, httpx2.RemoteProtocolError | httpx2.ReadError | httpx2.WriteError):
        return "unreachable", True, None, f"connection dropped: {error}"
    if isinstance(error, httpx2.HTTPError):
        return "stream_error", False, None, f"{type(error).__name__}: {error}"
    return "bad_response", False, None, f"unexpected response: {type(error).__name__}: {error}"


def _http_error_message(error: HfHubHTTPError, status: int | None) -> str:
    body = ""
    # A streamed body may not have been read; the status code is enough then.
    with contextlib.suppress(Exception):
        body = error.response.text[:500]
    return f"HTTP {status}: {body}" if body else f"HTTP {status}"
