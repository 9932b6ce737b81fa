"""The model-stream reader reads plain sockets without letting go of the interpreter, so threads busy preparing
questions do not hold back the tokens of the answers already streaming."""

import socket
import threading
import time

import pytest

from inference.stream_reader import receiver_holding_the_interpreter

receive = receiver_holding_the_interpreter()
pytestmark = pytest.mark.skipif(receive is None, reason="no libc recv with MSG_DONTWAIT on this platform")


@pytest.fixture
def socket_pair():
    writer, reader = socket.socketpair()
    reader.setblocking(False)
    yield writer, reader
    writer.close()
    reader.close()


def test_it_reads_what_waits_as_socket_recv_does(socket_pair):
    writer, reader = socket_pair

    with pytest.raises(BlockingIOError):
        receive(reader.fileno())
    writer.sendall(b'data: {"token": {"text": "Hello"}}\n\n')
    assert receive(reader.fileno()) == b'data: {"token": {"text": "Hello"}}\n\n'
    writer.close()
    assert receive(reader.fileno()) == b""


def test_a_closed_socket_is_an_os_error_not_a_read_of_whatever_took_its_number(socket_pair):
    _, reader = socket_pair
    reader.close()

    assert reader.fileno() == -1  # what the stream reader passes for a socket closed under a reading
    with pytest.raises(OSError):
        receive(reader.fileno())


def test_reading_fifty_streams_is_not_held_back_by_busy_threads():
    """Two threads keep the interpreter busy, as a worker preparing questions does. With `socket.recv`, which lets
    go of the interpreter for each read and then waits for it again, reading one token from each of 50 sockets
    took about 200 ms here; holding it, about 0.3 ms."""
    pairs = [socket.socketpair() for _ in range(50)]
    for _, reader in pairs:
        reader.setblocking(False)
    stop = threading.Event()

    def keep_busy():
        while not stop.is_set():
            sum(range(1000))

    busy = [threading.Thread(target=keep_busy) for _ in range(2)]
    for thread in busy:
        thread.start()
    try:
        time.sleep(0.02)
        for writer, _ in pairs:
            writer.sendall(b'data: {"token": {"text": " word"}}\n\n')
        started = time.perf_counter()
        received = [receive(reader.fileno()) for _, reader in pairs]
        took_s = time.perf_counter() - started
    finally:
        stop.set()
        for thread in busy:
            thread.join()
        for writer, reader in pairs:
            writer.close()
            reader.close()

    assert received == [b'data: {"token": {"text": " word"}}\n\n'] * 50
    assert took_s < 0.05
