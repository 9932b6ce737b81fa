"""Event webhooks: each of the six events reaches its subscribers, signed with the subscription's secret, retried
with backoff and recorded like a lead's delivery; addresses inside the network are refused; managed through the API.
The receiver is a real HTTP server on 127.0.0.1 (allowed per subscription, as an administrator may)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from chatbot.chat.conversations import conversation_resume_or_start, message_feedback, message_receive
from chatbot.chat.handoff import handoff_request
from chatbot.chat.staff import conversation_take_over, staff_message_send
from chatbot.dashboard.services import staff_member_save
from chatbot.leads.capture import lead_capture
from chatbot.models import Message, WebhookDelivery, WebhookDeliveryAttempt, WebhookSubscription
from chatbot.webhooks.delivery import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    webhook_signature_verify,
)
from chatbot.webhooks.events import message_created_emit, subscriptions_forget
from chatbot.webhooks.sending import webhook_deliveries_send_due, webhook_delivery_attempt
from chatbot.webhooks.subscriptions import SubscriptionInvalid, subscription_create
from tests.leads.conftest import GOOD, LEAD_FORM

ALL_EVENTS = [
    "conversation.started", "message.created", "handoff.requested", "lead.created", "lead.updated",
    "feedback.negative",
]  # fmt: skip


def subscribe(receiver, *, bot=None, events=ALL_EVENTS) -> WebhookSubscription:
    return subscription_create(bot=bot, url=receiver.url, events=events, allow_private_addresses=True)


def received(receiver) -> list[dict]:
    return [request.json for request in receiver.received]


def test_every_event_reaches_a_subscriber_of_all_bots(acme, receiver):
    subscribe(receiver)
    acme.lead_form = LEAD_FORM
    acme.save(update_fields=["lead_form"])
    conversation = conversation_resume_or_start(bot=acme, visitor_id="v1", page_url="https://www.acme.test/")
    visitor, answer = message_receive(conversation=conversation, text="Do you ship?", dispatch_answer=False)
    Message.objects.filter(id=answer.id).update(status="complete", text="Yes.")
    message_feedback(conversation=conversation, message_id=answer.id, value="down")
    handoff_request(conversation=conversation)
    lead_capture(conversation=conversation, fields=GOOD)
    lead_capture(conversation=conversation, fields={**GOOD, "size": "51+"})

    assert all(webhook_deliveries_send_due().values())

    events = received(receiver)
    assert [event["event"] for event in events] == [
        "conversation.started", "message.created", "feedback.negative", "handoff.requested", "lead.created",
        "lead.updated",
    ]  # fmt: skip
    assert {event["bot"] for event in events} == {"acme"}
    assert events[0]["conversation"]["id"] == conversation.id
    assert events[0]["conversation"]["dashboard_url"].endswith(f"/dashboard/conversations/{conversation.id}/")
    assert events[1]["message"] == {**events[1]["message"], "id": visitor.id, "role": "visitor", "text": "Do you ship?"}
    assert events[2]["message"]["id"] == answer.id and events[2]["message"]["feedback"] == "down"
    assert events[3]["status"] == "unavailable" and "Do you ship?" in events[3]["summary"]
    assert events[4]["lead"]["email"] == "ada@example.com"
    assert events[5]["lead"]["fields"]["size"] == "51+"
    assert [r.headers[EVENT_HEADER] for r in receiver.received] == [e["event"] for e in events]


def test_staff_and_bot_messages_are_message_created_events_too(acme, receiver):
    subscribe(receiver, bot=acme, events=["message.created"])
    agent = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password").user
    conversation = conversation_resume_or_start(bot=acme, visitor_id="v1")
    conversation_take_over(conversation=conversation, user=agent)
    staff_message_send(conversation=conversation, user=agent, text="Hi, Alan here.")
    webhook_deliveries_send_due()
    assert [(e["message"]["role"], e["message"]["text"]) for e in received(receiver)] == [("staff", "Hi, Alan here.")]


def test_a_subscription_gets_only_its_bots_and_its_events(acme, globex, receiver):
    subscribe(receiver, bot=globex, events=["conversation.started"])
    conversation_resume_or_start(bot=acme, visitor_id="v1")
    conversation = conversation_resume_or_start(bot=globex, visitor_id="v1")
    message_receive(conversation=conversation, text="Hello", dispatch_answer=False)
    webhook_deliveries_send_due()
    assert [(e["event"], e["bot"]) for e in received(receiver)] == [("conversation.started", "globex")]


def test_a_process_asks_the_database_who_subscribed_once_per_interval_and_at_once_after_its_own_changes(
    acme, receiver, settings, django_assert_num_queries
):
    settings.WEBHOOK_SUBSCRIPTIONS_CACHE_S = 60
    subscriptions_forget()
    conversation = conversation_resume_or_start(bot=acme, visitor_id="v1")
    message_created_emit(bot=acme, message_id=0)  # nobody subscribed: one query, remembered
    with django_assert_num_queries(0):
        message_created_emit(bot=acme, message_id=0)
    subscription = subscribe(receiver, bot=acme, events=["message.created"])  # a change here counts at once
    message_receive(conversation=conversation, text="Hello", dispatch_answer=False)
    # A change made elsewhere (here: straight in the database) waits for the interval.
    WebhookSubscription.objects.filter(id=subscription.id).update(events=["lead.created"])
    with django_assert_num_queries(1):  # the subscribers of message.created, no longer any
        assert message_created_emit(bot=acme, message_id=0) == []
    subscriptions_forget()
    webhook_deliveries_send_due()
    assert [e["event"] for e in received(receiver)] == ["message.created"]


def test_a_delivery_is_signed_with_the_subscriptions_secret(acme, receiver):
    subscription = subscribe(receiver, bot=acme, events=["conversation.started"])
    conversation_resume_or_start(bot=acme, visitor_id="v1")
    [delivery_id] = webhook_deliveries_send_due()
    [request] = receiver.received
    assert webhook_signature_verify(
        secret=subscription.secret,
        timestamp=request.headers[TIMESTAMP_HEADER],
        body=request.body,
        signature=request.headers[SIGNATURE_HEADER],
    )
    assert not webhook_signature_verify(
        secret=acme.crm_webhook_secret,
        timestamp=request.headers[TIMESTAMP_HEADER],
        body=request.body,
        signature=request.headers[SIGNATURE_HEADER],
    )
    assert request.headers[DELIVERY_HEADER] == f"evt-{delivery_id}"
    assert subscription.secret not in request.body.decode()


def test_a_failing_receiver_is_retried_with_backoff_and_every_attempt_recorded(acme, receiver):
    subscribe(receiver, bot=acme, events=["conversation.started"])
    receiver.fail_next(500, 503)
    conversation_resume_or_start(bot=acme, visitor_id="v1")
    t0 = timezone.now()
    delivery = WebhookDelivery.objects.get()
    assert webhook_delivery_attempt(delivery_id=delivery.id, now=t0) is False
    assert webhook_deliveries_send_due(now=t0 + timedelta(seconds=29)) == {}
    assert webhook_deliveries_send_due(now=t0 + timedelta(seconds=30)) == {delivery.id: False}
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=90)
    assert webhook_deliveries_send_due(now=t0 + timedelta(seconds=90)) == {delivery.id: True}
    assert webhook_deliveries_send_due(now=t0 + timedelta(days=1)) == {}
    assert list(WebhookDeliveryAttempt.objects.values_list("succeeded", "response_code")) == [
        (False, 500), (False, 503), (True, 200),
    ]  # fmt: skip
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.received}) == 1  # a receiver can drop repeats
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hook", "http://10.0.0.8/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/h"],
)
def test_it_refuses_to_subscribe_an_address_inside_the_network(acme, url):
    with pytest.raises(SubscriptionInvalid) as refused:
        subscription_create(bot=acme, url=url, events=["conversation.started"])
    assert "url" in refused.value.problems
    assert not WebhookSubscription.objects.exists()


def test_link_local_addresses_are_refused_even_where_private_ones_are_allowed(acme):
    with pytest.raises(SubscriptionInvalid, match="link-local"):
        subscription_create(
            bot=acme, url="http://169.254.169.254/", events=["lead.created"], allow_private_addresses=True
        )


def test_an_address_that_became_internal_is_refused_at_delivery_and_recorded(acme, receiver):
    subscription = subscribe(receiver, bot=acme, events=["conversation.started"])
    WebhookSubscription.objects.filter(id=subscription.id).update(allow_private_addresses=False)
    conversation_resume_or_start(bot=acme, visitor_id="v1")
    [(delivery_id, sent)] = webhook_deliveries_send_due().items()
    assert sent is False
    assert not receiver.received
    attempt = WebhookDeliveryAttempt.objects.get(delivery_id=delivery_id)
    assert "private or internal address" in attempt.error


def test_a_public_address_is_accepted(acme):
    # No DNS here: an address literal stands for a public host.
    subscription = subscription_create(bot=acme, url="https://93.184.216.34/hook", events=["lead.created"])
    assert subscription.events == ["lead.created"] and subscription.secret.startswith("whsec_")


def test_an_unknown_event_is_refused(acme, receiver):
    with pytest.raises(SubscriptionInvalid):
        subscription_create(bot=acme, url=receiver.url, events=["message.deleted"], allow_private_addresses=True)


# --- through the API ---


def test_the_api_subscribes_lists_shows_deliveries_and_removes(api, acme, receiver, settings):
    settings.PARLEY_ALLOW_PRIVATE_URLS = True  # the receiver is on 127.0.0.1
    acme.crm_webhook_url = "https://crm.acme.test/hooks"
    acme.save(update_fields=["crm_webhook_url"])
    created = api.post("/webhooks", {"bot": "acme", "url": receiver.url, "events": ["conversation.started"]})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_")
    listed = api.get("/webhooks").json()
    assert [(w["kind"], w["bot"], w["events"]) for w in listed] == [
        ("subscription", "acme", ["conversation.started"]),
        ("lead_webhook", "acme", ["lead.created", "lead.updated"]),
    ]
    assert "secret" not in api.get(f"/webhooks/{body['id']}").json()
    conversation_resume_or_start(bot=acme, visitor_id="v1")
    webhook_deliveries_send_due()
    [delivery] = api.get(f"/webhooks/{body['id']}/deliveries").json()
    assert (delivery["event"], delivery["status"], delivery["attempts"]) == ("conversation.started", "delivered", 1)
    assert api.delete(f"/webhooks/{body['id']}").status_code == 204
    assert not WebhookSubscription.objects.exists()


def test_the_api_refuses_internal_addresses_unknown_events_and_other_bots(acme_api, api, acme):
    internal = acme_api.post("/webhooks", {"bot": "acme", "url": "http://127.0.0.1:8000/", "events": ["lead.created"]})
    assert internal.status_code == 400 and "url" in internal.json()["errors"]
    unknown = acme_api.post("/webhooks", {"bot": "acme", "url": "https://crm.acme.test/", "events": ["lead.deleted"]})
    assert unknown.status_code == 400
    assert (
        acme_api.post("/webhooks", {"bot": "globex", "url": "https://x.test/", "events": ["lead.created"]}).status_code
        == 404
    )
    every_bot = acme_api.post("/webhooks", {"bot": None, "url": "https://x.test/", "events": ["lead.created"]})
    assert every_bot.status_code == 403
    # A subscription to every bot is not visible to a key that reaches only one.
    other = WebhookSubscription.objects.create(bot=None, url="https://crm.example.com/hook", events=["lead.created"])
    assert acme_api.get(f"/webhooks/{other.id}").status_code == 404
    assert api.get(f"/webhooks/{other.id}").status_code == 200
    assert json.loads(api.get("/webhooks").content)[0]["bot"] is None


@pytest.mark.django_db(transaction=True)  # the answer gives its database connection back while the model streams
def test_the_bots_finished_answer_is_a_message_created_event(acme, receiver, sim):
    from chatbot.answers.pipeline import answer_generate
    from tests.chatbot import question_ask

    sim.configure(script_text="We ship to the EU.")
    subscribe(receiver, bot=acme, events=["message.created"])
    bot_message = question_ask(acme, "Do you ship abroad?")
    answer_generate(message_id=bot_message.id, coalesce_interval_s=0)
    webhook_deliveries_send_due()
    assert [(e["message"]["role"], e["message"]["status"]) for e in received(receiver)] == [
        ("visitor", "complete"), ("bot", "complete"),
    ]  # fmt: skip
    assert received(receiver)[1]["message"]["text"] == "We ship to the EU."


def test_an_answer_the_watchdog_ends_is_a_message_created_event_with_its_error(acme, receiver):
    from chatbot.answers.watchdog import lost_answers_finalise

    subscribe(receiver, bot=acme, events=["message.created"])
    conversation = conversation_resume_or_start(bot=acme, visitor_id="v1")
    _, answer = message_receive(conversation=conversation, text="Do you ship?", dispatch_answer=False)

    # No worker ever started it.
    assert lost_answers_finalise(not_started_after_s=0, recheck_after_s=0) == [answer.id]

    webhook_deliveries_send_due()
    assert [(e["message"]["role"], e["message"]["id"], e["message"]["status"]) for e in received(receiver)] == [
        ("visitor", answer.in_reply_to_id, "complete"), ("bot", answer.id, "error"),
    ]  # fmt: skip
