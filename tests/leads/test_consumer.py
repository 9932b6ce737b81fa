"""The lead frames of the chat websocket (docs/protocol.md, "Lead form"), through the real ASGI application, Redis
channel layer and database."""

import itertools

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chatbot.asgi import application
from chatbot.models import Conversation, Lead, LeadDelivery, Message

from .conftest import ALLOWED_ORIGIN, CONSENT, GOOD, LEAD_FORM, lead_bot_create

pytestmark = pytest.mark.django_db(transaction=True)
_addresses = itertools.count(1)
PAGE = "https://www.acme.test/pricing?utm_source=google&utm_campaign=brand"


async def connect(bot) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application,
        f"/ws/chat/{bot.public_id}/",
        headers=[(b"host", b"parley.test"), (b"origin", ALLOWED_ORIGIN.encode())],
    )
    n = next(_addresses)
    communicator.scope["client"] = (f"10.9.{n // 250}.{n % 250}", 50000)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def hello(communicator, token=None) -> dict:
    await communicator.send_json_to(
        {"type": "hello", "protocol": 1, "visitor_token": token, "page_url": PAGE, "referrer": "https://search.test/"}
    )
    ready = await communicator.receive_json_from(timeout=5)
    assert ready["type"] == "ready"
    return ready


async def nothing_more(communicator) -> None:
    assert await communicator.receive_nothing(timeout=0.3)


def bot_with(**triggers):
    return lead_bot_create(lead_form={**LEAD_FORM, "triggers": {**LEAD_FORM["triggers"], **triggers}})


async def test_it_shows_the_form_before_the_chat_and_takes_a_valid_lead_after_a_bad_email():
    bot = await database_sync_to_async(bot_with)(before_chat=True)
    communicator = await connect(bot)
    await hello(communicator)
    offer = await communicator.receive_json_from(timeout=5)
    assert offer["type"] == "lead_form"
    assert offer["reason"] == "before_chat"
    assert offer["form"]["title"] == "Talk to our sales team"
    assert offer["form"]["submit_label"] == "Send"
    assert offer["form"]["fields"][1] == {
        "name": "email", "type": "email", "label": "Work email", "required": True, "options": [],
    }  # fmt: skip

    await communicator.send_json_to({"type": "lead_submit", "fields": {**GOOD, "email": "ada@example"}})
    assert await communicator.receive_json_from(timeout=5) == {
        "type": "lead_errors",
        "errors": {"email": "Enter a valid email address."},
    }
    await communicator.send_json_to({"type": "lead_submit", "fields": {**GOOD, "consent": False, "email": ""}})
    errors = (await communicator.receive_json_from(timeout=5))["errors"]
    assert errors == {"email": "This field is required.", "consent": "Please tick this box to continue."}

    await communicator.send_json_to({"type": "lead_submit", "fields": GOOD})
    assert await communicator.receive_json_from(timeout=5) == {
        "type": "lead_saved",
        "message": "Thanks! Our team will get back to you shortly.",
    }
    lead = await database_sync_to_async(Lead.objects.get)()
    assert lead.email == "ada@example.com"
    assert lead.page_url == PAGE
    assert lead.utm == {"source": "google", "campaign": "brand"}
    assert lead.consent_text == CONSENT
    await nothing_more(communicator)
    await communicator.disconnect()


async def test_a_reconnecting_visitor_gets_an_open_form_back_but_not_once_answered():
    bot = await database_sync_to_async(bot_with)(before_chat=True)
    first = await connect(bot)
    ready = await hello(first)
    assert (await first.receive_json_from(timeout=5))["type"] == "lead_form"
    await first.disconnect()
    again = await connect(bot)
    await hello(again, ready["visitor_token"])
    assert (await again.receive_json_from(timeout=5))["reason"] == "before_chat"
    await again.send_json_to({"type": "lead_submit", "fields": GOOD})
    assert (await again.receive_json_from(timeout=5))["type"] == "lead_saved"
    await again.disconnect()
    last = await connect(bot)
    await hello(last, ready["visitor_token"])
    await nothing_more(last)
    await last.disconnect()


async def test_a_dismissed_form_stays_dismissed():
    bot = await database_sync_to_async(bot_with)(before_chat=True)
    communicator = await connect(bot)
    ready = await hello(communicator)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "lead_form"
    await communicator.send_json_to({"type": "lead_dismiss"})
    await nothing_more(communicator)
    conversation = await database_sync_to_async(Conversation.objects.get)()
    assert conversation.lead_form_dismissed_at is not None
    await communicator.disconnect()
    again = await connect(bot)
    await hello(again, ready["visitor_token"])
    await nothing_more(again)
    await again.disconnect()


async def test_it_offers_the_form_after_the_third_visitor_message():
    bot = await database_sync_to_async(bot_with)()
    communicator = await connect(bot)
    await hello(communicator)
    for n in range(1, 4):
        await communicator.send_json_to({"type": "message", "text": f"Question {n}", "client_id": f"c{n}"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "ack"
        if n < 3:
            await nothing_more(communicator)
            # No worker here: finish the queued answer so the next message is accepted.
            await database_sync_to_async(lambda: Message.objects.filter(status="streaming").update(status="complete"))()
    offer = await communicator.receive_json_from(timeout=5)
    assert (offer["type"], offer["reason"]) == ("lead_form", "after_messages")
    await communicator.disconnect()


async def test_it_offers_the_form_when_a_person_is_asked_for_and_nobody_is_online():
    bot = await database_sync_to_async(bot_with)()
    communicator = await connect(bot)
    await hello(communicator)
    await communicator.send_json_to({"type": "handoff_request"})
    handoff = await communicator.receive_json_from(timeout=5)
    assert (handoff["type"], handoff["status"]) == ("handoff", "unavailable")
    offer = await communicator.receive_json_from(timeout=5)
    assert (offer["type"], offer["reason"]) == ("lead_form", "no_human")
    await communicator.disconnect()


async def test_it_refuses_a_malformed_submission_and_a_bot_without_a_form_offers_nothing():
    bot = await database_sync_to_async(lead_bot_create)(lead_form={})
    communicator = await connect(bot)
    await hello(communicator)
    await communicator.send_json_to({"type": "handoff_request"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "handoff"
    await nothing_more(communicator)
    await communicator.send_json_to({"type": "lead_submit", "fields": "ada@example.com"})
    error = await communicator.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    await communicator.send_json_to({"type": "lead_submit", "fields": GOOD})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "lead_errors"
    assert not await database_sync_to_async(Lead.objects.exists)()
    await communicator.disconnect()


async def test_a_submission_queues_its_deliveries():
    bot = await database_sync_to_async(lead_bot_create)(notification_email="sales@acme.test")
    communicator = await connect(bot)
    await hello(communicator)
    await communicator.send_json_to({"type": "lead_submit", "fields": GOOD})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "lead_saved"
    delivery = await database_sync_to_async(LeadDelivery.objects.get)()
    assert (delivery.channel, delivery.status) == ("email", "pending")
    await communicator.disconnect()
