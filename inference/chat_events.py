"""Reading a Messages API event stream (the chat route of TGI and of OpenAI-compatible servers) event by event, with
huggingface_hub's rules: the same whether inference.client reads it in the calling thread or inference.stream_reader
reads it on its thread."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from huggingface_hub.inference._common import _parse_text_generation_error


class ChatReading:
    """What one attempt's stream has said so far, event by event: the same rules whether it is read in the thread
    or on the reader."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.model: str | None = None
        self.text_was_yielded = False

    def contents(self, chunk: dict) -> list[str]:
        """The pieces of text of one event; notes its model, usage and finish reason."""
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        contents = []
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:  # the EOS chunk carries "" (TGI) or None (others)
                self.text_was_yielded = True
                contents.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = finish_reason_of(choice["finish_reason"])
        return contents


class Delivery:
    """Hands a stream's text to `on_delta`, line by line: `on_line` for `stream_reader.read_lines`, and for the
    thread when the reader cannot read the response."""

    def __init__(
        self,
        reading: ChatReading,
        on_delta: Callable[[str], bool],
        should_stop: Callable[[], bool] | None,
        watcher: Any,  # inference.client's stop watcher (its `stopped`), None without `should_stop`
    ) -> None:
        self.reading = reading
        self.on_delta = on_delta
        self.should_stop = should_stop
        self.watcher = watcher
        self.stopped = False
        self.enough = False

    def on_line(self, line: str) -> bool:
        event = chat_stream_event(line)
        if event is None:
            return False
        if event is DONE:
            return True
        try:
            if self.watcher is not None and (self.watcher.stopped or self.should_stop()):
                self.stopped = True
                return True
            for content in self.reading.contents(event):
                if self.on_delta(content):
                    self.enough = True
                    return True
        except Exception as error:
            raise DeliveryFailed() from error
        return False


class DeliveryFailed(Exception):
    """`on_delta` or `should_stop` raised (its exception is the cause): not the model server's failure."""


DONE = object()


def chat_stream_event(line: str) -> dict | object | None:
    """The JSON object of one line of a Messages API event stream, as huggingface_hub reads it
    (`_format_chat_completion_stream_output`): None for a line that is not `data:`, `DONE` at `data: [DONE]`;
    an event carrying "error" raises the same exception it would."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return DONE
    event = json.loads(payload)
    if event.get("error") is not None:
        raise _parse_text_generation_error(event["error"], event.get("error_type"))
    return event


def chat_stream_events(lines: Iterator[str]) -> Iterator[dict]:
    """The JSON objects of a Messages API event stream, up to `data: [DONE]`."""
    for line in lines:
        event = chat_stream_event(line)
        if event is DONE:
            return
        if event is not None:
            yield event  # type: ignore[misc]


def finish_reason_of(server_reason: str) -> str:
    if server_reason in ("stop", "eos_token", "stop_sequence"):
        return "stop"
    return server_reason
