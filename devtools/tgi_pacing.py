"""The timed simulator's pacer: one thread sends the token events of every plain stream, each at its time.

In timing mode (the bench's), a stream with no fault due and no keep-alives hands its events to the pacer instead of
sleeping between tokens on its own request thread. The times are the ones the request's thread keeps: the model's
TTFT before the first token, one token interval after each token sent, and the events between tokens (usage,
[DONE]) at once after the token before them. What changes is what it costs the machine: a request thread woken for
each token took about 37 µs of CPU per token, a fifth of a core at 125 answers streaming, on the same two cores as
the Parley processes the bench measures (docs/scaling.md). A model server has a machine of its own.

A socket that will not take an event at once (its client reads slowly) is handed back: the request's thread sends
the rest of that event and paces the stream on its own from there, so one slow client never holds up the others.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class PacedStream:
    """A stream's events as the pacer sends them, and where it left off."""

    sock: socket.socket
    events: list[tuple[bytes, bool]]  # (the event's data, whether it is a token)
    on_token_sent: Callable[[bytes, int], None]  # the token's data and the tokens sent so far, once it is written
    per_token_s: float
    due: float = 0.0  # when the next token may go
    next_index: int = 0  # the first event not handed to the socket
    tokens_sent: int = 0
    pending: bytes = b""  # the part of an event the socket would not take at once: the request's thread sends it
    gone: bool = False  # the client hung up (a send failed), or the simulator is stopping
    done: threading.Event = field(default_factory=threading.Event)


class Pacer:
    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, PacedStream]] = []  # a heap of (due, order, stream)
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def pace(
        self,
        sock: socket.socket,
        events: list[tuple[bytes, bool]],
        *,
        first_token_after_s: float,
        per_token_s: float,
        on_token_sent: Callable[[bytes, int], None],
    ) -> PacedStream:
        """Send `events` on `sock` at their times; return once they are all sent, the client is gone, or the socket
        would not take an event at once (then `pending` and `next_index` say what is left)."""
        stream = PacedStream(
            sock=sock,
            events=events,
            on_token_sent=on_token_sent,
            per_token_s=per_token_s,
            due=time.monotonic() + first_token_after_s,
        )
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="simulator-pacer", daemon=True)
                self._thread.start()
            self._push(stream, 0.0)  # the events before the first token go at once
        stream.done.wait()
        return stream

    def _push(self, stream: PacedStream, when: float) -> None:
        heapq.heappush(self._due, (when, next(self._order), stream))
        self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._stopping.is_set():
                        for _, _, stream in self._due:
                            stream.gone = True
                            stream.done.set()
                        self._due.clear()
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    # At most 50 ms at a time: the simulator's stop is noticed within that.
                    self._changed.wait(min(self._due[0][0] - now, 0.05) if self._due else 0.05)
                ready = []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
            for stream in ready:
                due = self._advance(stream)
                if due is None:
                    stream.done.set()
                else:
                    with self._changed:
                        self._push(stream, due)

    def _advance(self, stream: PacedStream) -> float | None:
        """Send what is due of `stream`: when its next token is due, or None when it is over for the pacer. A client
        that hung up is found by the send that fails (the first one after the hang-up may still be taken)."""
        while stream.next_index < len(stream.events):
            data, is_token = stream.events[stream.next_index]
            if is_token and stream.due > time.monotonic():
                return stream.due
            frame = b"%x\r\n%s\r\n" % (len(data), data)
            try:
                written = stream.sock.send(frame, socket.MSG_DONTWAIT)
            except BlockingIOError:
                written = 0
            except OSError:
                stream.gone = True
                return None
            stream.next_index += 1
            if is_token:
                stream.tokens_sent += 1
                stream.on_token_sent(data, stream.tokens_sent)
                # The interval counts from after the recording, as on a request thread (stamp, then sleep): a gap
                # between two recorded tokens is never shorter than the interval, however late one was recorded.
                stream.due = time.monotonic() + stream.per_token_s
            if written < len(frame):
                stream.pending = frame[written:]
                return None
        return None
