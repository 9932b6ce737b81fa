"""What chatbot/realtime/daphne_tuning.py changes in Daphne's frame sending, on Twisted's own TCP connection and
autobahn's own protocol module (a real Daphne serving large frames: tests/security/test_sockets_on_a_real_server.py)."""

import socket

import pytest
from autobahn import util
from autobahn.websocket import protocol
from twisted.internet import tcp
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Protocol

from chatbot.realtime.daphne_tuning import daphne_tuning_install

daphne_tuning_install()


@pytest.fixture
def connection():
    """A Twisted TCP connection over a socket pair, on a reactor of its own that never runs: whatever reaches the
    peer was written by `write` itself, not by the reactor."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reactor = EPollReactor()
    connection = tcp.Connection(ours, Protocol(), reactor)
    connection.connected = True
    yield connection, peer, reactor
    reactor.removeAll()
    ours.close()
    peer.close()


def read_all(peer: socket.socket, size: int) -> bytes:
    peer.setblocking(False)
    received = b""
    while len(received) < size:
        try:
            received += peer.recv(1 << 16)
        except BlockingIOError:
            break
    return received


def test_a_frame_is_written_at_once_when_nothing_waits_before_it(connection):
    connection, peer, reactor = connection
    connection.write(b"first frame")
    assert read_all(peer, 11) == b"first frame"
    assert connection not in reactor.getWriters()  # no epoll registration, no turn of the reactor


def test_what_the_socket_does_not_take_waits_and_goes_after_in_order(connection):
    connection, peer, reactor = connection
    frames = [bytes([n]) * 50_000 for n in range(1, 6)]
    for frame in frames:
        connection.write(frame)
    assert connection in reactor.getWriters()  # the rest waits for the reactor, as Twisted does
    received = read_all(peer, 250_000)
    while len(received) < 250_000:
        connection.doWrite()  # what the reactor calls when the socket can take more
        received += read_all(peer, 250_000 - len(received))
    assert received == b"".join(frames)
    assert connection not in reactor.getWriters()


def test_a_connection_that_is_closing_writes_the_twisted_way(connection):
    connection, peer, reactor = connection
    connection.disconnecting = True
    connection.write(b"late")
    assert read_all(peer, 4) == b""
    assert connection in reactor.getWriters()


def test_autobahns_debug_values_read_the_same_when_a_line_is_written():
    class Sender:
        def sendData(self):
            pass

    method = Sender().sendData
    line = "{func} sent {data_len} bytes".format(func=protocol.hltype(method), data_len=protocol.hlval(42))  # noqa: UP032 - txaio formats lines so
    assert line == f"{util.hltype(method)} sent {util.hlval(42)} bytes"


def test_autobahns_debug_values_are_computed_only_when_a_line_is_written():
    class Counted:
        formatted = 0

        def __format__(self, spec):
            Counted.formatted += 1
            return "peer"

    value = protocol.hlval(Counted())  # what sendData does for every frame, logged or not
    assert Counted.formatted == 0
    assert f"{value}" == util.hlval("peer")
    assert Counted.formatted == 1
