"""The chat socket's per-address limits: a hostile frame cannot leak an address's connection count, and refusals do
not keep it alive. In process (Channels' `WebsocketCommunicator` on the real ASGI application, Redis, PostgreSQL), so
a consumer can be cut short as Daphne would; the odd handshakes at the end go to a real Daphne. Real websocket
clients against a real Daphne: test_sockets_on_a_real_server.py."""

import asyncio
import socket

import pytest
from channels.testing import WebsocketCommunicator

from chatbot.asgi import application
from chatbot.bots.services import bot_create
from chatbot.realtime.connections import async_client
from chatbot.realtime.keys import connections_key

from .test_hostile_input import ORIGIN, _addresses, _alive, _ready, _refused, _socket

ws = pytest.mark.django_db(transaction=True)


@pytest.fixture
def acme(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=[ORIGIN])


DEEP = "[" * 20000


async def _fresh_ip() -> str:
    """An address no socket has used: Redis outlives a test run, and the counter repeats its addresses."""
    ip = f"10.88.{next(_addresses) % 250}.{next(_addresses) % 250}"
    await async_client().delete(connections_key(ip))
    return ip


async def _open_count(ip: str) -> int:
    return int(await async_client().get(connections_key(ip)) or 0)


@ws
async def test_it_answers_a_frame_too_deep_to_parse_with_bad_frame_and_the_socket_lives_on(acme):
    communicator, _ = await _ready(acme, ip=await _fresh_ip())
    for frame in (DEEP, '{"type": "ping", "x": ' + "[" * 500 + "]" * 500 + "}"):
        await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from(timeout=10)
        assert (reply["type"], reply["code"]) == ("error", "bad_frame")
        await _alive(communicator)
    await communicator.disconnect()


@ws
async def test_it_keeps_an_address_able_to_chat_after_many_hostile_frames(acme, settings):
    settings.CHAT_CONNECTIONS_PER_IP = 3
    ip = await _fresh_ip()
    for _ in range(10):  # each of these killed its consumer and kept its slot: three were enough to lock out
        communicator, _ = await _ready(acme, ip=ip)
        await communicator.send_to(text_data=DEEP)
        await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
    assert await _open_count(ip) == 0
    sockets = [(await _ready(acme, ip=ip))[0] for _ in range(3)]
    for communicator in sockets:
        await communicator.disconnect()


@ws
async def test_it_gives_the_slot_back_when_a_socket_is_cut_short_without_its_disconnect(acme):
    ip = await _fresh_ip()
    communicator, _ = await _ready(acme, ip=ip)
    assert await _open_count(ip) == 1
    # What Daphne does to an application that outlives its close timeout: cancel it; `disconnect` never runs.
    communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await communicator.future
    assert await _open_count(ip) == 0


@ws
async def test_it_does_not_keep_a_full_addresss_count_alive_by_refusing_it(acme, settings):
    settings.CHAT_CONNECTIONS_PER_IP = 2
    ip = await _fresh_ip()
    sockets = [(await _ready(acme, ip=ip))[0] for _ in range(2)]
    await async_client().expire(connections_key(ip), 100)
    for _ in range(5):
        assert await _refused(_socket(acme, ip=ip)) == ("rate_limited", 4429)
    assert 0 < await async_client().ttl(connections_key(ip)) <= 100
    for communicator in sockets:
        await communicator.disconnect()
    assert await _open_count(ip) == 0


# --- the echo probe (item 8) ---


def _echo(*, origin: str | None, ip: str) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")] + ([(b"origin", origin.encode())] if origin else [])
    communicator = WebsocketCommunicator(application, "/ws/echo/", headers=headers)
    communicator.scope["client"] = (ip, 40000)
    return communicator


@ws
@pytest.mark.parametrize("origin", ["https://evil.test", "null", None])
async def test_the_echo_probe_refuses_other_sites(origin):
    communicator = _echo(origin=origin, ip=await _fresh_ip())
    connected, _ = await communicator.connect(timeout=10)
    assert not connected
    await communicator.disconnect()


@ws
async def test_the_echo_probe_counts_against_the_addresss_connection_limit(settings):
    settings.CHAT_CONNECTIONS_PER_IP = 3
    ip = await _fresh_ip()
    sockets = [_echo(origin="http://localhost", ip=ip) for _ in range(3)]
    for communicator in sockets:
        assert (await communicator.connect(timeout=10))[0]
    await sockets[0].send_json_to({"hello": "parley"})
    assert await sockets[0].receive_json_from(timeout=10) == {"type": "echo", "payload": {"hello": "parley"}}
    refused = _echo(origin="http://localhost", ip=ip)
    assert await refused.connect(timeout=10) == (False, 4429)
    for communicator in sockets:
        await communicator.disconnect()
    assert await _open_count(ip) == 0


# --- odd handshakes against a real Daphne: refused cleanly, never a 500 with a traceback ---


def _handshake(port: int, path: str, *, hosts: list[str], origin: str) -> bytes:
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"Host: {host}\r\n" for host in hosts)
    request += (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request.encode())
        received = b""
        # The reply to the handshake, then (when accepted) the error frame and the close frame.
        while b"\r\n\r\n" not in received or (received.startswith(b"HTTP/1.1 101") and b"\x88" not in received):
            piece = connection.recv(4096)
            if not piece:
                break
            received += piece
        return received


@pytest.mark.django_db(transaction=True)
def test_odd_hosts_and_paths_are_refused_without_a_server_error(daphne_server):
    bot = bot_create(slug="acme", name="Acme Support", allowed_origins=[ORIGIN])
    port = int(daphne_server.url.rsplit(":", 1)[1])
    own = f"127.0.0.1:{port}"
    chat = f"/ws/chat/{bot.public_id}/"
    # Two Host headers: neither is taken for this site's own page (with one, http://127.0.0.1 would be).
    reply = _handshake(port, chat, hosts=["127.0.0.1", "evil.test"], origin="http://127.0.0.1")
    assert reply.startswith(b"HTTP/1.1 101") and b'"code":"forbidden"' in reply, reply[:300]
    odd = [([own, "evil.test"], chat), (["127.0.0.1:notaport"], chat), (["[::1"], chat), ([own], "/chat/nowhere/")]
    for hosts, path in odd:
        reply = _handshake(port, path, hosts=hosts, origin=f"http://{own}")
        assert not reply.startswith(b"HTTP/1.1 500"), (hosts, path, reply[:200])
    assert "Traceback" not in daphne_server.log(), daphne_server.log()[-3000:]
