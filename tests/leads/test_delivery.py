"""Delivering leads: a signed webhook to the CRM and an email to the sales team, every attempt recorded, retried
with backoff until it arrives, never sent twice for the same version. The CRM is a real HTTP server on 127.0.0.1
that fails or goes away on demand; time is simulated by passing `now` to the services."""

import threading
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from chatbot.leads.capture import lead_capture
from chatbot.leads.delivery import (
    BACKOFF_MAX,
    GIVE_UP_AFTER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    delivery_backoff,
    lead_deliveries_send_due,
    lead_delivery_attempt,
    webhook_signature,
    webhook_signature_verify,
)
from chatbot.leads.tasks import lead_deliveries_resend_due
from chatbot.models import Lead, LeadDelivery, LeadDeliveryAttempt
from devtools.pytest_plugin import start_celery_worker

from .conftest import CONSENT, GOOD, lead_bot_create, visit


@pytest.fixture
def crm_bot(db, crm):
    return lead_bot_create(crm_webhook_url=crm.url)


def capture(bot, *, email="ada@example.com", visitor_id="visitor-1", now=None, **fields):
    return lead_capture(
        conversation=visit(bot, visitor_id=visitor_id), fields={**GOOD, "email": email, **fields}, now=now
    ).lead


def test_it_posts_the_lead_to_the_crm_signed_with_the_bots_secret(crm_bot, crm):
    lead = capture(crm_bot)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: True}
    [request] = crm.received
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert abs(int(request.headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert webhook_signature_verify(
        secret=crm_bot.crm_webhook_secret,
        timestamp=request.headers[TIMESTAMP_HEADER],
        body=request.body,
        signature=request.headers[SIGNATURE_HEADER],
    )
    payload = request.json
    assert payload["event"] == "lead.created"
    assert payload["lead"]["id"] == lead.id
    assert payload["lead"]["email"] == "ada@example.com"
    assert payload["lead"]["fields"]["company"] == "Analytical Engines"
    assert payload["lead"]["utm"]["campaign"] == "spring"
    assert payload["lead"]["consent"]["text"] == CONSENT
    assert crm_bot.crm_webhook_secret not in request.body.decode()
    delivery = LeadDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.delivered_at is not None) == ("delivered", 1, True)
    attempt = LeadDeliveryAttempt.objects.get()
    assert (attempt.succeeded, attempt.response_code) == (True, 200)


def test_a_signature_is_only_valid_for_the_same_secret_body_and_a_fresh_timestamp():
    body, now = b'{"event":"lead.created"}', time.time()
    timestamp = str(int(now))
    signature = webhook_signature(secret="s3cret", timestamp=timestamp, body=body)
    assert webhook_signature_verify(secret="s3cret", timestamp=timestamp, body=body, signature=signature, now=now)
    assert not webhook_signature_verify(secret="other", timestamp=timestamp, body=body, signature=signature, now=now)
    assert not webhook_signature_verify(secret="s3cret", timestamp=timestamp, body=body + b" ", signature=signature)
    # A replay: the same request ten minutes later.
    assert not webhook_signature_verify(
        secret="s3cret", timestamp=timestamp, body=body, signature=signature, now=now + 600
    )
    # The timestamp is signed: it cannot be refreshed without the secret.
    assert not webhook_signature_verify(
        secret="s3cret", timestamp=str(int(now) + 600), body=body, signature=signature, now=now + 600
    )


def test_it_retries_a_failing_crm_with_backoff_and_delivers_once_it_recovers(crm_bot, crm):
    crm.fail_next(500, 503)
    t0 = timezone.now()
    capture(crm_bot, now=t0)
    delivery = LeadDelivery.objects.get()
    assert lead_deliveries_send_due(now=t0) == {delivery.id: False}
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=30)
    assert lead_deliveries_send_due(now=t0 + timedelta(seconds=29)) == {}  # not due yet
    assert lead_deliveries_send_due(now=t0 + timedelta(seconds=30)) == {delivery.id: False}
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=30 + 60)
    assert lead_deliveries_send_due(now=t0 + timedelta(seconds=90)) == {delivery.id: True}
    assert lead_deliveries_send_due(now=t0 + timedelta(days=1)) == {}
    assert [r.status for r in crm.received] == [500, 503, 200]
    attempts = list(LeadDeliveryAttempt.objects.values_list("succeeded", "response_code"))
    assert attempts == [(False, 500), (False, 503), (True, 200)]
    assert "HTTP 503" in LeadDeliveryAttempt.objects.filter(response_code=503).get().error
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)


def test_a_crm_down_for_an_hour_loses_nothing_and_gets_each_lead_once(crm_bot, crm):
    crm.stop()  # connection refused from now on
    t0 = timezone.now()
    for n in range(3):
        capture(crm_bot, email=f"lead{n}@example.com", visitor_id=f"v{n}", now=t0 + timedelta(minutes=n))
    beat = timedelta(seconds=30)
    now, attempts_while_down = t0, 0
    while now < t0 + timedelta(hours=1):
        attempts_while_down += len(lead_deliveries_send_due(now=now))
        now += beat
    assert not crm.received
    assert LeadDelivery.objects.filter(status="pending").count() == 3
    # Backoff: a few attempts per lead in that hour, not one every 30 s.
    assert 3 * 5 <= attempts_while_down <= 3 * 9
    errors = set(LeadDeliveryAttempt.objects.values_list("error", flat=True))
    assert all(error.startswith("ConnectError") for error in errors)
    crm.start()  # back, on the same address
    while LeadDelivery.objects.filter(status="pending").exists():
        assert now < t0 + timedelta(hours=3), "not delivered an hour after the CRM came back"
        lead_deliveries_send_due(now=now)
        now += beat
    assert sorted(r.json["lead"]["email"] for r in crm.received) == [f"lead{n}@example.com" for n in range(3)]
    assert lead_deliveries_send_due(now=now + timedelta(days=2)) == {}
    assert len(crm.received) == 3


def test_backoff_doubles_up_to_an_hour_and_a_delivery_is_not_given_up_for_days(crm_bot, crm):
    assert [delivery_backoff(attempts=n).total_seconds() for n in range(1, 9)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600,
    ]  # fmt: skip
    assert delivery_backoff(attempts=50) == BACKOFF_MAX
    crm.stop()
    capture(crm_bot)
    delivery = LeadDelivery.objects.get()
    three_days = delivery.created_at + timedelta(days=3)
    assert lead_delivery_attempt(delivery_id=delivery.id, now=three_days) is False
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert delivery.next_attempt_at == three_days + timedelta(seconds=30)
    give_up = delivery.created_at + GIVE_UP_AFTER
    assert lead_delivery_attempt(delivery_id=delivery.id, now=give_up) is False
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)


def test_an_updated_lead_is_delivered_again_once_as_a_new_version(crm_bot, crm):
    capture(crm_bot)
    lead_deliveries_send_due()
    capture(crm_bot, size="51+")
    lead_deliveries_send_due()
    lead_deliveries_send_due()
    assert [r.json["event"] for r in crm.received] == ["lead.created", "lead.updated"]
    assert [r.json["lead"]["fields"]["size"] for r in crm.received] == ["11-50", "51+"]
    versions = [r.json["lead"]["version"] for r in crm.received]
    assert len(set(versions)) == 2
    assert len({r.headers["X-Parley-Delivery"] for r in crm.received}) == 2
    assert LeadDelivery.objects.filter(status="delivered").count() == 2


def test_an_update_while_the_crm_is_down_sends_only_the_latest_version(crm_bot, crm):
    crm.fail_next(500)
    capture(crm_bot)
    lead_deliveries_send_due()
    capture(crm_bot, size="51+", now=timezone.now() + timedelta(minutes=5))
    lead_deliveries_send_due(now=timezone.now() + timedelta(minutes=6))
    assert [r.status for r in crm.received] == [500, 200]
    assert crm.received[1].json["lead"]["fields"]["size"] == "51+"
    assert LeadDelivery.objects.get().status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_the_same_delivery_send_it_once(crm):
    bot = lead_bot_create(crm_webhook_url=crm.url)
    capture(bot)
    delivery = LeadDelivery.objects.get()
    crm.delay_s = 0.3  # a slow CRM: every racer arrives while the first one is still sending
    results = []

    def worker():
        try:
            results.append(lead_delivery_attempt(delivery_id=delivery.id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [None] * 7 + [True]
    assert len(crm.received) == 1
    # And the beat re-queuing everything that is due finds nothing more to send.
    assert lead_deliveries_send_due() == {}


def test_it_emails_the_sales_team(lead_bot):
    lead = capture(lead_bot)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: True}
    [email] = mail.outbox
    assert email.to == ["sales@acme.test"]
    assert email.reply_to == ["ada@example.com"]
    assert email.subject == "[Acme] New lead: Ada Lovelace"
    assert "company: Analytical Engines" in email.body
    assert "Page: https://www.acme.test/pricing?utm_source=newsletter" in email.body
    assert "Campaign: utm_campaign=spring, utm_medium=email, utm_source=newsletter" in email.body
    assert CONSENT in email.body
    assert f"/dashboard/bots/acme/leads/{lead.id}/" in email.body
    assert LeadDeliveryAttempt.objects.get().succeeded


def test_a_bot_without_email_or_webhook_stores_leads_without_deliveries(db):
    bot = lead_bot_create()
    capture(bot)
    assert Lead.objects.count() == 1
    assert not LeadDelivery.objects.exists()


@pytest.fixture
def crm_worker(transactional_db, tmp_path):
    """A real worker allowed to reach the CRM on 127.0.0.1."""
    worker = start_celery_worker(log_path=tmp_path / "worker.log", PARLEY_ALLOW_PRIVATE_URLS="1")
    yield worker
    worker.stop()


@pytest.mark.django_db(transaction=True)
def test_the_worker_delivers_and_the_beat_resends_what_failed(crm, crm_worker):
    celery_worker = crm_worker
    bot = lead_bot_create(crm_webhook_url=crm.url)
    crm.fail_next(502)
    capture(bot)  # committed: the worker is asked to deliver at once
    deadline = time.monotonic() + 20
    while not LeadDeliveryAttempt.objects.exists():
        assert time.monotonic() < deadline, celery_worker.log()[-3000:]
        time.sleep(0.05)
    delivery = LeadDelivery.objects.get()
    assert delivery.status == "pending"
    # Thirty seconds later, as far as the delivery is concerned: the beat's task queues it again.
    LeadDelivery.objects.filter(id=delivery.id).update(next_attempt_at=timezone.now())
    lead_deliveries_resend_due.delay()
    lead_deliveries_resend_due.delay()  # twice, as an overlapping beat might: still sent once
    while LeadDelivery.objects.get().status != "delivered":
        assert time.monotonic() < deadline, celery_worker.log()[-3000:]
        time.sleep(0.05)
    time.sleep(0.5)
    assert [r.status for r in crm.received] == [502, 200]


def test_it_refuses_a_webhook_to_a_private_address_unless_private_urls_are_allowed(crm_bot, crm, settings):
    settings.PARLEY_ALLOW_PRIVATE_URLS = False
    capture(crm_bot)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: False}
    assert crm.received == []
    attempt = LeadDeliveryAttempt.objects.get()
    assert attempt.error.startswith("Refused:") and "127.0.0.1" in attempt.error


@pytest.mark.parametrize("address", ["http://169.254.169.254/latest/", "http://[64:ff9b::a9fe:a9fe]/hook"])
def test_it_never_sends_a_webhook_to_a_cloud_metadata_address(db, crm, address):
    bot = lead_bot_create(crm_webhook_url=address)
    capture(bot)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: False}
    assert LeadDeliveryAttempt.objects.get().error.startswith("Refused:")


def test_it_keeps_the_status_of_a_failed_webhook_but_not_what_the_target_answered(crm_bot, crm):
    crm.fail_next(500)
    crm.reply_body = b"<h1>Internal admin</h1> db password: hunter2"
    capture(crm_bot)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: False}
    attempt = LeadDeliveryAttempt.objects.get()
    assert (attempt.response_code, attempt.error) == (500, "HTTP 500")
