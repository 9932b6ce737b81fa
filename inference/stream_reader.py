"""One thread per process reads the body of every model stream handed to it, instead of one thread per stream.

A worker streams many answers at once. Read each in a thread of its own and every token wakes a thread, which
then waits its turn for the interpreter: at 50 answers of 50 tokens/s that cost about 170 µs of CPU per token in a
throw-away test, for about 20 µs of work. One thread waiting on all the sockets (`selectors`) wakes once for
whatever has arrived on any of them: about 60 µs per token in the same test (docs/scaling-rounds.md, the sixth round).

    body = response_body(response)      # None: not HTTP/1.1 on a socket of its own; read it in the thread instead
    read_lines(body, on_line, timeout_s=30.0)

`read_lines` blocks the calling thread until the body ends and calls `on_line` with each line of it (without its
line break) on the reader's thread, in order. `on_line` must be quick and must not block: every other stream waits
while it runs. It returns True when it has read enough (the stream's end marker, a stop); an exception it raises
ends the reading and is raised by `read_lines`. A network failure is raised as httpx2 raises it reading the same
body in the thread: `ReadTimeout` after `timeout_s` without data, `ReadError`, `RemoteProtocolError`.

The reader reads a plain TCP socket without letting go of the interpreter (`receiver_holding_the_interpreter`): a
read that lets go waits for the interpreter again afterwards, and while a worker prepares questions on other threads
that wait was about 4 ms per read: reading 50 streams that each had a token took 200 ms instead of 0.3 ms.

The reader drives the response's own HTTP/1.1 state (h11, under httpx2's connection) and socket: bytes h11 has
already buffered with the headers are read first, and closing the response afterwards closes it as usual.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import httpx2

logger = logging.getLogger(__name__)

RECEIVE_BYTES = 65536


def receiver_holding_the_interpreter() -> Callable[[int], bytes] | None:
    """A function that reads up to RECEIVE_BYTES from a non-blocking socket's file number, as `socket.recv` does
    (b"" once the peer has closed, `BlockingIOError` when nothing waits, `OSError` on a failure), but keeps the
    interpreter's lock: libc's `recv` through ctypes' PyDLL, which does not release it. A read of bytes already
    waiting takes microseconds; `socket.recv` lets go of the lock for it and then queues for it behind the threads
    that took it meanwhile, one switch interval (5 ms) or more each time. Each function has its own buffer: one
    thread only. None where libc's `recv` or MSG_DONTWAIT is not there (Windows): use `socket.recv` then."""
    flags = getattr(socket, "MSG_DONTWAIT", None)
    if flags is None:
        return None
    try:
        recv = ctypes.PyDLL(None, use_errno=True).recv
    except (OSError, AttributeError, TypeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    recv.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(RECEIVE_BYTES)

    def receive(fd: int) -> bytes:
        received = recv(fd, buffer, RECEIVE_BYTES, flags)
        if received < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                raise BlockingIOError(code, os.strerror(code))
            raise OSError(code, os.strerror(code))
        return ctypes.string_at(buffer, received)

    return receive


@dataclass(eq=False)
class ResponseBody:
    """A streaming response's body as the reader reads it: its h11 connection and its socket."""

    connection: h11.Connection
    sock: socket.socket


def response_body(response: httpx2.Response) -> ResponseBody | None:
    """The body of an httpx2 streaming response for `read_lines`, or None when it is not HTTP/1.1 on a socket the
    reader can read (HTTP/2, TLS inside a proxy's TLS, another transport): read it in the thread then."""
    try:
        connection = response.stream._stream._httpcore_stream._stream._connection._h11_state  # type: ignore[attr-defined]
        network_stream = response.extensions["network_stream"]
        sock = network_stream.get_extra_info("socket")
        ssl_object = network_stream.get_extra_info("ssl_object")
    except (AttributeError, KeyError):
        return None
    if not isinstance(connection, h11.Connection) or not isinstance(sock, socket.socket):
        return None
    if ssl_object is not None and not isinstance(sock, ssl.SSLSocket):
        return None  # the TLS is not the socket's own (TLS in a proxy's TLS): its bytes are not the body's
    if connection.their_state is not h11.SEND_BODY or response.is_stream_consumed:
        return None
    return ResponseBody(connection=connection, sock=sock)


def read_lines(body: ResponseBody, on_line: Callable[[str], bool], *, timeout_s: float) -> None:
    """Read `body` on the process's reader thread, calling `on_line` with each line; return once it has ended or
    `on_line` said enough; raise what ended it otherwise."""
    reading = _Reading(body=body, on_line=on_line, timeout_s=timeout_s)
    _reader().add(reading)
    reading.done.wait()
    if reading.error is not None:
        raise reading.error


@dataclass(eq=False)
class _Reading:
    body: ResponseBody
    on_line: Callable[[str], bool]
    timeout_s: float
    fd: int = -1
    deadline: float = 0.0
    partial: bytes = b""
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class _Reader:
    """The thread and its selector. Readings arrive through a list and a byte on a socket pair, so that only the
    reader's thread touches the selector."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self._selector.register(self._wake_receiver, selectors.EVENT_READ, None)
        self._arriving: list[_Reading] = []
        self._lock = threading.Lock()
        self._readings: set[_Reading] = set()
        self._next_sweep = float("inf")
        self._receive_plain = receiver_holding_the_interpreter()
        threading.Thread(target=self._run, name="model-stream-reader", daemon=True).start()

    def add(self, reading: _Reading) -> None:
        with self._lock:
            self._arriving.append(reading)
        # A full buffer is full of wakes the reader has not read yet: it will look.
        with contextlib.suppress(BlockingIOError):
            self._wake_sender.send(b"\0")

    def _run(self) -> None:
        while True:
            try:
                self._turn()
            except Exception as error:  # a fault of the reader itself: end every reading with it, keep reading
                logger.exception("the model stream reader failed; ending the %d streams it read", len(self._readings))
                for reading in list(self._readings):
                    self._end(reading, error)

    def _turn(self) -> None:
        timeout = None if self._next_sweep == float("inf") else max(0.0, self._next_sweep - time.monotonic())
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._take_arriving()
            else:
                self._receive(key.data)
        if time.monotonic() >= self._next_sweep:
            self._sweep()

    def _take_arriving(self) -> None:
        while True:
            try:
                if not self._wake_receiver.recv(4096):
                    break
            except BlockingIOError:
                break
        with self._lock:
            arriving, self._arriving = self._arriving, []
        now = time.monotonic()
        for reading in arriving:
            reading.deadline = now + reading.timeout_s
            self._next_sweep = min(self._next_sweep, reading.deadline)
            self._readings.add(reading)
            try:
                reading.body.sock.setblocking(False)
                reading.fd = reading.body.sock.fileno()
                self._register(reading)
            except (OSError, ValueError) as error:  # closed or shut meanwhile
                self._readings.discard(reading)
                self._finish(reading, httpx2.ReadError(str(error)))
                continue
            self._parse(reading)  # what h11 already holds, read with the headers

    def _register(self, reading: _Reading) -> None:
        try:
            self._selector.register(reading.fd, selectors.EVENT_READ, reading)
        except KeyError:
            # The number is still registered for a reading whose socket was closed under it (its thread was
            # interrupted while it waited): that reading is over.
            self._end(self._selector.get_key(reading.fd).data, httpx2.ReadError("the stream's socket was closed"))
            self._selector.register(reading.fd, selectors.EVENT_READ, reading)

    def _receive(self, reading: _Reading) -> None:
        sock = reading.body.sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                data = sock.recv(RECEIVE_BYTES)
                # Decrypted bytes may wait in the SSL object with nothing left on the socket to wake us.
                while data and sock.pending():
                    data += sock.recv(RECEIVE_BYTES)
            elif self._receive_plain is not None:
                # By the socket's number now, not the one it was registered under: a socket closed meanwhile has
                # -1 (an OSError), and the lock, kept from here to the end of the read, lets no thread close it and
                # reuse its number in between.
                data = self._receive_plain(sock.fileno())
            else:
                data = sock.recv(RECEIVE_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        except OSError as error:
            self._end(reading, httpx2.ReadError(str(error)))
            return
        reading.deadline = time.monotonic() + reading.timeout_s
        try:
            reading.body.connection.receive_data(data)  # b"": the server closed the connection
        except h11.RemoteProtocolError as error:
            self._end(reading, httpx2.RemoteProtocolError(str(error)))
            return
        self._parse(reading)

    def _parse(self, reading: _Reading) -> None:
        """Hand `on_line` every whole line h11 can give now; end the reading at the body's end or when it says."""
        try:
            while True:
                event = reading.body.connection.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Data):
                    if b"\n" not in event.data:
                        reading.partial += event.data
                        continue
                    *lines, reading.partial = (reading.partial + event.data).split(b"\n")
                    for line in lines:
                        if reading.on_line(line.rstrip(b"\r").decode("utf-8", "replace")):
                            self._end(reading, None)
                            return
                else:  # EndOfMessage or ConnectionClosed: the body is over, its last line too
                    if reading.partial:
                        reading.on_line(reading.partial.rstrip(b"\r").decode("utf-8", "replace"))
                    self._end(reading, None)
                    return
        except h11.RemoteProtocolError as error:
            self._end(reading, httpx2.RemoteProtocolError(str(error)))
        except Exception as error:  # on_line's own
            self._end(reading, error)

    def _sweep(self) -> None:
        """End the readings that waited `timeout_s` for data; note when the next one would."""
        now = time.monotonic()
        self._next_sweep = float("inf")
        for reading in list(self._readings):
            if reading.deadline <= now:
                self._end(reading, httpx2.ReadTimeout(f"no data within {reading.timeout_s:g} s"))
            else:
                self._next_sweep = min(self._next_sweep, reading.deadline)

    def _end(self, reading: _Reading, error: BaseException | None) -> None:
        if reading not in self._readings:
            return
        self._readings.discard(reading)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(reading.fd)  # by number: the socket may be closed by now
        self._finish(reading, error)

    @staticmethod
    def _finish(reading: _Reading, error: BaseException | None) -> None:
        reading.error = error
        reading.done.set()


_instance: _Reader | None = None
_instance_lock = threading.Lock()


def _reader() -> _Reader:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = _Reader()
        return _instance


def _forget_in_child() -> None:
    global _instance
    _instance = None  # the parent's thread did not come along


os.register_at_fork(after_in_child=_forget_in_child)
