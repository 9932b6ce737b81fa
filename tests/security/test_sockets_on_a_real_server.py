"""Issue 16's socket holes (items 2, 6, 7 and 8) through real websocket clients (the `websockets` library, as a
browser speaks it) against a real Daphne process, its Redis and the test database. One Daphne serves the module
(starting one takes seconds), with every limit checked here set low in its environment. The in-process tests of the
same promises (tests/security/test_chat_socket_limits.py, test_address_limits.py,
tests/dashboard/test_access_changes.py) stay: they are faster and reach corners a real client cannot (a consumer
cancelled without its `disconnect`).

Every client here connects from 127.0.0.1, so each test first forgets what Redis counted for that address."""

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatbot.dashboard.services import staff_member_save
from chatbot.models import Lead, StaffMember
from chatbot.realtime.connections import async_client
from chatbot.realtime.keys import connections_key
from chatbot.realtime.protocol import CLOSE_ACCESS_CHANGED
from devtools.pytest_plugin import start_daphne
from devtools.stack import ServerProcess
from tests.dashboard.conftest import PASSWORD
from tests.leads.conftest import lead_bot_create
from tests.rate_windows import clear_of_window_end

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "127.0.0.1"
ORIGIN = "https://www.acme.test"  # the `bot` fixture's allowed site
DEEP = "[" * 20000
LOW_LIMITS = {
    "CHAT_CONNECTIONS_PER_IP": "5",
    "CHAT_NEW_VISITORS_PER_MINUTE_PER_IP": "5",
    "CHAT_LEADS_PER_HOUR_PER_IP": "2",
    "CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP": "10",
    "DASHBOARD_ACCESS_RECHECK_S": "0.5",
}


@pytest.fixture(scope="module")
def limits_server(django_db_setup, tmp_path_factory) -> Iterator[ServerProcess]:
    server = start_daphne(log_path=tmp_path_factory.mktemp("daphne") / "daphne.log", **LOW_LIMITS)
    yield server
    server.stop()


@pytest.fixture
def server(limits_server) -> Iterator[ServerProcess]:
    """The module's Daphne; no traceback in what it logs during the test."""
    logged_before = len(limits_server.log())
    yield limits_server
    assert "Traceback" not in limits_server.log()[logged_before:], limits_server.log()[logged_before:][-3000:]


async def address_forget() -> None:
    """Redis outlives a test run, and every test's clients come from the same address."""
    client = async_client()
    await client.delete(connections_key(ADDRESS), *[key async for key in client.scan_iter(f"*:{ADDRESS}:*")])


async def open_count() -> int:
    return int(await async_client().get(connections_key(ADDRESS)) or 0)


async def open_count_is(expected: int) -> bool:
    return await open_count() == expected


async def eventually(check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


async def next_frame(socket: ClientConnection, kind: str | None = None, *, timeout_s: float = 10) -> dict:
    """The next frame (of type `kind`, skipping others)."""
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), timeout_s))
        if kind is None or frame["type"] == kind:
            return frame


async def close_code(socket: ClientConnection, *, timeout_s: float = 10) -> int:
    """The code the server closes the socket with (frames sent before it are skipped)."""
    try:
        while True:
            await asyncio.wait_for(socket.recv(), timeout_s)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


async def hang_up(socket: ClientConnection) -> None:
    """Close a chat socket and wait until the server has given its slot back: the next socket from this address
    must not be refused because a release is still on its way to Redis."""
    await socket.close()
    await eventually(lambda: open_count_is(0), what="the address's chat sockets all given back")


def chat_url(server: ServerProcess, bot) -> str:
    return server.url.replace("http://", "ws://") + f"/ws/chat/{bot.public_id}/"


async def visitor_hello(server: ServerProcess, bot, *, token: str | None = None) -> tuple[ClientConnection, dict]:
    """A visitor's widget: its socket, and the server's answer to its `hello` (`ready`, or an error)."""
    socket = await connect(chat_url(server, bot), origin=ORIGIN, open_timeout=10)
    await socket.send(json.dumps({"type": "hello", "protocol": 1, "visitor_token": token}))
    return socket, await next_frame(socket)


def staff_login(server: ServerProcess, username: str) -> str:
    """Sign in through the real login form, as a browser does; the session cookie it sets."""
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        form = browser.get("/dashboard/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post(
            "/dashboard/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
        )
        assert signed_in.status_code == 302, signed_in.text[:500]
        return browser.cookies["sessionid"]


async def dashboard_socket(server: ServerProcess, session: str) -> ClientConnection:
    return await connect(
        server.url.replace("http://", "ws://") + "/ws/dashboard/",
        origin=server.url,
        additional_headers={"Cookie": f"sessionid={session}"},
        open_timeout=10,
    )


# --- item 2: hostile frames never lock an address out of the chat ---


async def test_hostile_frames_from_one_address_never_lock_it_out_of_the_chat(bot, server):
    await address_forget()
    # Five sockets per address here: each hostile frame used to kill its consumer and keep its slot for good.
    token = None
    for _ in range(10):
        socket, ready = await visitor_hello(server, bot, token=token)
        assert ready["type"] == "ready", ready
        token = ready["visitor_token"]
        await socket.send(DEEP)
        reply = await next_frame(socket)
        assert (reply["type"], reply["code"]) == ("error", "bad_frame"), reply
        await socket.send(json.dumps({"type": "ping"}))
        assert (await next_frame(socket))["type"] == "pong"  # the socket lives on
        await hang_up(socket)

    socket, ready = await visitor_hello(server, bot, token=token)
    assert ready["type"] == "ready", ready
    await socket.send(json.dumps({"type": "message", "text": "Still there?", "client_id": "c1"}))
    assert (await next_frame(socket, "ack"))["client_id"] == "c1"
    await hang_up(socket)


async def test_a_frame_too_deep_to_parse_gets_an_error_on_the_dashboard_socket_too(agent, server):
    dashboard = await dashboard_socket(server, staff_login(server, "alan"))
    await dashboard.send(DEEP)
    assert (await next_frame(dashboard))["type"] == "error"
    # The socket lives on (it used to die without its `disconnect`: its presence stayed, "online", for a while).
    await dashboard.send(json.dumps({"type": "ping"}))
    assert (await next_frame(dashboard))["type"] == "pong"
    await dashboard.close()


# --- item 6: what one address may set off ---


async def test_an_address_can_start_only_so_many_new_conversations_a_minute(bot, server):
    await address_forget()
    await clear_of_window_end(60)
    replies = []
    for _ in range(8):  # five a minute here
        socket, reply = await visitor_hello(server, bot)
        replies.append(reply)
        await hang_up(socket)
    assert [r.get("code") or r["type"] for r in replies] == ["ready"] * 5 + ["rate_limited"] * 3
    # A returning visitor is not a new one: their conversation stays reachable.
    socket, reply = await visitor_hello(server, bot, token=replies[0]["visitor_token"])
    assert (reply["type"], reply["conversation_id"]) == ("ready", replies[0]["conversation_id"])
    await hang_up(socket)


async def test_an_address_can_leave_only_so_many_leads_an_hour(server):
    bot = await database_sync_to_async(lead_bot_create)(
        lead_form={"fields": [{"type": "email", "required": True}, {"type": "consent"}]}
    )
    await address_forget()
    await clear_of_window_end(3600)
    outcomes = []
    for n in range(4):  # fresh visitors, each with a valid lead (each means an email and a webhook); two an hour here
        socket, ready = await visitor_hello(server, bot)
        assert ready["type"] == "ready", ready
        lead = {"type": "lead_submit", "fields": {"email": f"v{n}@example.com", "consent": True}}
        await socket.send(json.dumps(lead))
        reply = await next_frame(socket)
        outcomes.append(reply.get("code") or reply["type"])
        await hang_up(socket)
    assert outcomes == ["lead_saved"] * 2 + ["rate_limited"] * 2
    assert await Lead.objects.acount() == 2


async def test_thirty_requests_for_a_person_alert_a_real_dashboard_once_and_are_limited(bot, admin, server):
    await address_forget()
    await clear_of_window_end(3600)
    dashboard = await dashboard_socket(server, staff_login(server, "ada"))
    visitor, ready = await visitor_hello(server, bot)
    replies = []
    for _ in range(30):  # ten an hour here
        await visitor.send(json.dumps({"type": "handoff_request"}))
        reply = await next_frame(visitor)
        while reply["type"] == "lead_form":  # offered alongside "unavailable" when the bot has a form
            reply = await next_frame(visitor)
        replies.append(reply.get("code") or reply["type"])
    assert replies == ["handoff"] * 10 + ["rate_limited"] * 20
    # The visitor's message reaches the dashboard after every alert sent before it: count the alerts up to it.
    await visitor.send(json.dumps({"type": "message", "text": "Hello?", "client_id": "c1"}))
    frames = []
    while not frames or frames[-1]["type"] != "message":
        frames.append(await next_frame(dashboard))
    alerts = [f for f in frames if f["type"] == "handoff" and f["conversation_id"] == ready["conversation_id"]]
    assert len(alerts) == 1, frames
    await hang_up(visitor)
    await dashboard.close()


# --- item 7: a staff member whose access changes stops hearing the visitors ---


async def _visitor_says(server: ServerProcess, bot, text: str) -> ClientConnection:
    socket, ready = await visitor_hello(server, bot)
    assert ready["type"] == "ready", ready
    await socket.send(json.dumps({"type": "message", "text": text, "client_id": "c1"}))
    await next_frame(socket, "ack")
    return socket


async def test_an_agent_taken_off_a_bot_in_the_dashboard_is_cut_off_from_its_visitors(bot, agent, server):
    await address_forget()
    session = staff_login(server, "alan")
    dashboard = await dashboard_socket(server, session)
    first = await _visitor_says(server, bot, "Do you ship to Norway?")
    assert (await next_frame(dashboard, "message"))["message"]["text"] == "Do you ship to Norway?"

    await database_sync_to_async(staff_member_save)(username="alan", role="agent", bots=[])
    assert await close_code(dashboard, timeout_s=5) == CLOSE_ACCESS_CHANGED
    # The dashboard reconnects with what the agent may see now: nothing of that bot.
    again = await dashboard_socket(server, session)
    second = await _visitor_says(server, bot, "My card number is 4111 1111 1111 1111")
    with pytest.raises(TimeoutError):
        await next_frame(again, timeout_s=1)
    await again.close()
    await first.close()
    await hang_up(second)


def _staff_member_delete(user) -> None:
    StaffMember.objects.filter(user=user).delete()


def _user_deactivate(user) -> None:
    get_user_model().objects.filter(id=user.id).update(is_active=False)


@pytest.mark.parametrize("change", [_staff_member_delete, _user_deactivate], ids=["removed", "deactivated"])
async def test_a_staff_member_removed_elsewhere_is_cut_off_within_the_recheck_interval(change, agent, server):
    session = staff_login(server, "alan")
    dashboard = await dashboard_socket(server, session)
    # As the admin site or a script would: no event is sent. The module's Daphne re-checks every half second.
    await database_sync_to_async(change)(agent)
    assert await close_code(dashboard, timeout_s=5) == CLOSE_ACCESS_CHANGED
    with pytest.raises(InvalidStatus) as refused:  # closed before the handshake ends: HTTP 403
        await dashboard_socket(server, session)
    assert refused.value.response.status_code == 403


# --- item 8: the echo probe is this site's own, and counted ---


async def test_the_echo_probe_refuses_other_sites_and_counts_against_the_addresss_limit(server):
    await address_forget()
    echo = server.url.replace("http://", "ws://") + "/ws/echo/"
    for origin in ("https://evil.test", "null", None):
        with pytest.raises(InvalidStatus) as refused:
            await connect(echo, origin=origin, open_timeout=10)
        assert refused.value.response.status_code == 403, origin
    assert await open_count() == 0

    sockets = [await connect(echo, origin=server.url, open_timeout=10) for _ in range(5)]  # five here
    await sockets[0].send(json.dumps({"hello": "parley"}))
    assert await next_frame(sockets[0]) == {"type": "echo", "payload": {"hello": "parley"}}
    with pytest.raises(InvalidStatus) as refused:  # this site's own page, but one socket too many
        await connect(echo, origin=server.url, open_timeout=10)
    assert refused.value.response.status_code == 403
    await sockets.pop().close()
    await eventually(lambda: open_count_is(4), what="the closed probe's slot given back")
    sockets.append(await connect(echo, origin=server.url, open_timeout=10))
    for socket in sockets:
        await socket.close()
    await eventually(lambda: open_count_is(0), what="every probe's slot given back")


async def test_the_echo_probe_answers_what_it_cannot_parse_with_an_error_and_lives_on(server):
    await address_forget()
    echo = await connect(server.url.replace("http://", "ws://") + "/ws/echo/", origin=server.url, open_timeout=10)
    for frame in ("{not json", DEEP):  # a script sets any Origin it likes: these used to kill the probe
        await echo.send(frame)
        reply = await next_frame(echo)
        assert (reply["type"], reply["code"]) == ("error", "bad_frame"), reply
    await echo.send(json.dumps([1]))
    assert await next_frame(echo) == {"type": "echo", "payload": [1]}
    await echo.close()
    await eventually(lambda: open_count_is(0), what="the probe's slot given back")


async def test_frames_that_fill_the_sockets_buffers_all_arrive_whole_and_in_order(server):
    """Daphne writes a frame to the socket at once when nothing waits before it (chatbot/realtime/daphne_tuning.py);
    what the kernel does not take waits in Twisted's buffer. 12 MB of echoes to a client that reads none of them
    until it has sent everything fill both sockets' buffers (the client stops reading past 4 frames queued)."""
    await address_forget()
    echo = await connect(server.url.replace("http://", "ws://") + "/ws/echo/", origin=server.url, open_timeout=10,
                         max_queue=4)  # fmt: skip
    payloads = [f"{n:04d}" + "x" * 20_000 for n in range(600)]
    for payload in payloads:
        await echo.send(json.dumps(payload))
    echoed = [(await next_frame(echo))["payload"] for _ in payloads]
    assert echoed == payloads
    await echo.close()
    await eventually(lambda: open_count_is(0), what="the probe's slot given back")
