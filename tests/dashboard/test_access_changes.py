"""A staff member whose access changes stops hearing what they may no longer see: their open dashboard sockets close
at once when it changes in the dashboard, and within the re-check interval when it changes anywhere else (the admin
site, a script). In process: Channels' `WebsocketCommunicator` on the real ASGI application, Redis channel layer and
database. Through real websocket clients against a real Daphne: tests/security/test_sockets_on_a_real_server.py."""

import pytest
from channels.db import database_sync_to_async

from chatbot.dashboard.services import staff_member_save
from chatbot.models import StaffMember
from chatbot.realtime.protocol import CLOSE_ACCESS_CHANGED

from .conftest import chat_socket, receive_until, staff_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def _visitor_says(bot, text: str):
    visitor = chat_socket(bot)
    assert (await visitor.connect(timeout=10))[0]
    await visitor.send_json_to({"type": "hello"})
    await receive_until(visitor, "ready", timeout=10)
    await visitor.send_json_to({"type": "message", "text": text, "client_id": "c1"})
    await receive_until(visitor, "ack", timeout=10)
    return visitor


async def _closed_with(socket) -> int:
    while True:
        output = await socket.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            return output["code"]


async def test_an_agent_taken_off_a_bot_in_the_dashboard_stops_hearing_its_visitors_at_once(agent, bot):
    socket = await staff_socket(agent)
    assert (await socket.connect(timeout=10))[0]
    first = await _visitor_says(bot, "Do you ship to Norway?")
    await receive_until(socket, "message", timeout=10)

    await database_sync_to_async(staff_member_save)(username="alan", role="agent", bots=[])
    assert await _closed_with(socket) == CLOSE_ACCESS_CHANGED
    # Back with what the agent may see now: nothing of that bot.
    again = await staff_socket(agent)
    assert (await again.connect(timeout=10))[0]
    second = await _visitor_says(bot, "My card number is 4111 1111 1111 1111")
    assert await again.receive_nothing(timeout=1)
    for communicator in (first, second, again):
        await communicator.disconnect()


async def test_a_staff_member_removed_elsewhere_is_cut_off_within_the_recheck_interval(agent, bot, settings):
    settings.DASHBOARD_ACCESS_RECHECK_S = 0.2
    socket = await staff_socket(agent)
    assert (await socket.connect(timeout=10))[0]
    # As the admin site or a script would: no event is sent.
    await StaffMember.objects.filter(user_id=agent.id).adelete()
    assert await _closed_with(socket) == CLOSE_ACCESS_CHANGED
    refused = await staff_socket(agent)
    assert await refused.connect(timeout=10) == (False, 4403)


async def test_unchanged_access_keeps_the_socket_open(agent, bot, settings):
    settings.DASHBOARD_ACCESS_RECHECK_S = 0.1
    socket = await staff_socket(agent)
    assert (await socket.connect(timeout=10))[0]
    assert await socket.receive_nothing(timeout=1)
    visitor = await _visitor_says(bot, "Still there?")
    assert (await receive_until(socket, "message", timeout=10))["message"]["text"] == "Still there?"
    await visitor.disconnect()
    await socket.disconnect()
