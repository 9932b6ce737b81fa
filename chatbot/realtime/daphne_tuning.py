"""Two costs of every websocket frame Daphne sends, taken out (installed by chatbot/asgi.py, so in Daphne only).

Daphne relays every streamed token event as one frame: with 50 answers at once, 2,500 frames a second per process.
`bench.daphne_events` measured about 130-180 µs of Daphne's CPU per frame; a profile of it showed two costs that
do nothing for the visitor:

1. **Twisted writes each frame on the reactor's next turn.** `transport.write` only buffers the bytes and registers
   the socket for writing (an `epoll_ctl`); the reactor then wakes for it, sends, and unregisters it (another
   `epoll_ctl`). `write_through_install` has a plain TCP connection with nothing waiting in its buffer send at once;
   what the kernel does not take (a full socket buffer) and every other case (TLS, data already buffered, a
   connection closing) goes Twisted's own way, in order.
2. **autobahn formats a debug line for every frame sent, logged or not** (`WebSocketProtocol.sendData`: the
   arguments, four `click.style` calls and a qualified-name lookup, are computed before the logger drops them).
   `lazy_log_values_install` has its protocol module compute them only when a line is written: the same text then.
"""

import functools

_installed = False


def daphne_tuning_install() -> None:
    global _installed
    if not _installed:
        write_through_install()
        lazy_log_values_install()
        _installed = True


# --- 1. writes through -----------------------------------------------------------------------------------------


def write_through_install() -> None:
    from twisted.internet import tcp

    twisted_write = tcp.Connection.write

    @functools.wraps(twisted_write)
    def write(self, data: bytes) -> None:
        if (
            data
            and not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
            and isinstance(data, bytes)
        ):
            try:
                sent = self.socket.send(data)
            except OSError:  # would block, or a broken connection: Twisted's own write finds out and reports it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        twisted_write(self, data)

    tcp.Connection.write = write


# --- 2. debug-line values computed only when the line is written -----------------------------------------------


class _Lazy:
    """A value for a log line's `{name}`: `function(*args)`, computed when the line is formatted."""

    __slots__ = ("args", "function", "kwargs")

    def __init__(self, function, *args, **kwargs) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs

    def __format__(self, spec: str) -> str:
        return format(self.function(*self.args, **self.kwargs), spec)

    def __str__(self) -> str:
        return str(self.function(*self.args, **self.kwargs))

    __repr__ = __str__


def lazy_log_values_install() -> None:
    from autobahn import util
    from autobahn.websocket import protocol

    protocol.hltype = functools.partial(_Lazy, util.hltype)
    protocol.hlval = functools.partial(_Lazy, util.hlval)
