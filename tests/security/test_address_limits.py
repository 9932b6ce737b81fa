"""What one address may set off through chat sockets: new visitors, leads, requests for a person, and the
dashboards' alerts for those requests. In process: Channels' `WebsocketCommunicator` on the real ASGI application,
Redis and PostgreSQL. The same limits through real websocket clients against a real Daphne are in
test_sockets_on_a_real_server.py."""

import uuid

import pytest
from channels.db import database_sync_to_async

from chatbot.chat import session
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Conversation, Lead
from chatbot.realtime.connections import async_client
from tests.dashboard.conftest import chat_socket, staff_socket
from tests.leads.conftest import lead_bot_create
from tests.rate_windows import clear_of_window_end

pytestmark = pytest.mark.django_db(transaction=True)
_addresses = iter(range(1, 250))


async def _fresh_ip() -> str:
    """An address with no count in Redis (which outlives a test run)."""
    ip = f"10.99.{next(_addresses)}.7"
    for key in [key async for key in async_client().scan_iter(f"parley:rate:*:{ip}:*")]:
        await async_client().delete(key)
    return ip


async def _hello(bot, *, ip: str, token: str | None = None):
    visitor = chat_socket(bot, ip=ip)
    assert (await visitor.connect(timeout=10))[0]
    await visitor.send_json_to({"type": "hello", "visitor_token": token})
    return visitor, await visitor.receive_json_from(timeout=10)


@pytest.fixture
def lead_bot(transactional_db):
    return lead_bot_create(lead_form={"fields": [{"type": "email", "required": True}, {"type": "consent"}]})


async def test_an_address_can_start_only_so_many_new_conversations_a_minute(lead_bot, settings):
    settings.CHAT_NEW_VISITORS_PER_MINUTE_PER_IP = 5
    ip = await _fresh_ip()
    await clear_of_window_end(60)
    replies = []
    for _ in range(8):
        visitor, reply = await _hello(lead_bot, ip=ip)
        replies.append(reply)
        await visitor.disconnect()
    assert [r["type"] for r in replies] == ["ready"] * 5 + ["error"] * 3
    assert {r.get("code") for r in replies[5:]} == {"rate_limited"}
    assert await Conversation.objects.acount() == 5
    # A returning visitor is not a new one: their conversation stays reachable.
    returning, reply = await _hello(lead_bot, ip=ip, token=replies[0]["visitor_token"])
    assert reply["type"] == "ready" and reply["conversation_id"] == replies[0]["conversation_id"]
    await returning.disconnect()


async def test_an_address_can_leave_only_so_many_leads_an_hour(lead_bot, settings):
    settings.CHAT_LEADS_PER_HOUR_PER_IP = 3
    ip = await _fresh_ip()
    await clear_of_window_end(3600)
    outcomes = []
    for n in range(6):  # fresh visitors, each with a valid lead: each would mean an email and a webhook
        visitor, _ = await _hello(lead_bot, ip=ip)
        await visitor.send_json_to({"type": "lead_submit", "fields": {"email": f"v{n}@example.com", "consent": True}})
        reply = await visitor.receive_json_from(timeout=10)
        outcomes.append(reply.get("code") or reply["type"])
        await visitor.disconnect()
    assert outcomes == ["lead_saved"] * 3 + ["rate_limited"] * 3
    assert await Lead.objects.acount() == 3


async def test_repeated_requests_for_a_person_alert_the_dashboards_once_and_are_limited(bot, settings):
    settings.CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP = 10
    await clear_of_window_end(3600)
    admin = await database_sync_to_async(staff_member_save)(username="ada", role="admin", display_name="Ada")
    dashboard = await staff_socket(await database_sync_to_async(lambda: admin.user)())
    assert (await dashboard.connect(timeout=10))[0]
    visitor, ready = await _hello(bot, ip=await _fresh_ip())
    replies = []
    for _ in range(30):
        await visitor.send_json_to({"type": "handoff_request"})
        reply = await visitor.receive_json_from(timeout=10)
        replies.append(reply.get("code") or reply["type"])
        while reply["type"] == "lead_form":  # offered alongside "unavailable" when the bot has a form
            reply = await visitor.receive_json_from(timeout=10)
    assert replies == ["handoff"] * 10 + ["rate_limited"] * 20
    # A visitor's message reaches the dashboards after any alert sent before it: count the alerts up to it.
    await visitor.send_json_to({"type": "message", "text": "Hello?", "client_id": "c1"})
    frames = []
    while not frames or frames[-1]["type"] != "message":
        frames.append(await dashboard.receive_json_from(timeout=10))
    alerts = [f for f in frames if f["type"] == "handoff" and f["conversation_id"] == ready["conversation_id"]]
    assert len(alerts) == 1
    await visitor.disconnect()
    await dashboard.disconnect()


async def test_messages_count_against_the_visitor_and_then_the_address_in_one_go(settings):
    """Each message counts against its visitor and its address; one refused by the visitor's own limit does not
    use up the address's, which other visitors behind it (an office, a school) share."""
    settings.CHAT_MESSAGES_PER_MINUTE_PER_VISITOR = 2
    settings.CHAT_MESSAGES_PER_MINUTE_PER_IP = 3
    await clear_of_window_end(60)
    ip = await _fresh_ip()
    chatty, quiet, another = (f"{name}-{uuid.uuid4().hex}" for name in ("chatty", "quiet", "another"))

    def limited(visitor_id: str):
        return session.visitor_message_limited(visitor_id=visitor_id, client_ip=ip)

    assert [await limited(chatty) for _ in range(4)] == [False, False, True, True]
    # The address counted only the two messages that passed: one more visitor's message is its third.
    assert await limited(quiet) is False
    assert await limited(another) is True
