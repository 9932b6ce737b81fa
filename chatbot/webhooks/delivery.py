"""Delivering a signed webhook, the same way for a lead's CRM webhook and for an event subscription: the body is
signed with HMAC-SHA256, the address is checked (no link-local or, unless allowed, internal addresses: also on the
address actually connected to), a failure is retried with backoff for GIVE_UP_AFTER, every attempt is recorded, and
a worker claims a delivery before sending it so that it goes out once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.db import models, transaction
from django.db.models import QuerySet

from knowledge.web import ForbiddenAddressError, address_checked_client, address_problem

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Parley-Signature"
TIMESTAMP_HEADER = "X-Parley-Timestamp"
EVENT_HEADER = "X-Parley-Event"
DELIVERY_HEADER = "X-Parley-Delivery"
USER_AGENT = "Parley-Webhook/1"
WEBHOOK_TIMEOUT_S = 10.0
# While one worker sends a delivery, nobody else may: the claim holds the row this long (longer than a send).
CLAIM_LEASE = timedelta(minutes=2)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# A receiver that is down for a long weekend still gets everything; after this a delivery is marked failed.
GIVE_UP_AFTER = timedelta(days=7)


def delivery_backoff(*, attempts: int) -> timedelta:
    """How long to wait after the `attempts`th failed attempt: 30 s, 1 min, 2 min, … at most an hour."""
    # The exponent is capped: a receiver down for a week means about 170 attempts, and 2**170 seconds overflows.
    return min(BACKOFF_FIRST * 2 ** min(max(attempts - 1, 0), 20), BACKOFF_MAX)


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the secret over `<timestamp>.<raw body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_signature_verify(
    *, secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (the reference for the docs): a fresh timestamp and a matching signature."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return age <= tolerance_s and hmac.compare_digest(expected, signature)


@dataclass
class Sent:
    succeeded: bool
    response_code: int | None = None
    error: str = ""
    # Django's console email backend "sent" it: printed on the server, received by nobody.
    to_console: bool = False


def webhook_post(*, url: str, secret: str, event: str, delivery_key: str, payload: dict, allow_private: bool) -> Sent:
    """POST `payload` as JSON, signed; redirects are not followed. `delivery_key` is the same for every attempt of
    one delivery, so a receiver can drop a repeat after a worker crash."""
    problem = address_problem(url, allow_private=allow_private)
    if problem:
        return Sent(False, error=f"Refused: {problem}"[:500])
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_key,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
    try:
        # The address each connection really goes to is checked; no redirect or environment proxy is followed.
        with address_checked_client(
            allow_private=allow_private, timeout_s=WEBHOOK_TIMEOUT_S, user_agent=USER_AGENT
        ) as c:
            response = c.post(url, content=body, headers=headers)
    except ForbiddenAddressError as error:
        return Sent(False, error=f"Refused: {error}"[:500])
    except httpx.HTTPError as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, ForbiddenAddressError):
            return Sent(False, error=f"Refused: {cause}"[:500])
        return Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    if 200 <= response.status_code < 300:
        return Sent(True, response.status_code)
    # The status only: what the receiver answered is not ours to keep, nor to show staff.
    return Sent(False, response.status_code, f"HTTP {response.status_code}")


def delivery_claim(*, queryset: QuerySet, delivery_id: int, now: datetime) -> models.Model | None:
    """Take a due delivery (of `queryset`: pending rows with `attempts` and `next_attempt_at`) for this worker:
    counted as an attempt and hidden from others for CLAIM_LEASE. None when it is not due or another has it."""
    with transaction.atomic():
        delivery = (
            queryset.select_for_update(skip_locked=True, of=("self",))
            .filter(id=delivery_id, status="pending", next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM_LEASE
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery


def delivery_result_record(
    *, delivery, attempt_model: type[models.Model], sent: Sent, now: datetime, same_version: QuerySet, what: str
) -> None:
    """Record the attempt; the delivery is delivered, retried after its backoff, or given up after GIVE_UP_AFTER.
    `same_version` is the delivery's row as long as it still carries what was sent (a lead updated meanwhile is
    due again at once instead)."""
    with transaction.atomic():
        attempt = attempt_model.objects.create(
            delivery_id=delivery.id, succeeded=sent.succeeded, response_code=sent.response_code, error=sent.error
        )
        attempt_model.objects.filter(id=attempt.id).update(attempted_at=now)
        if sent.succeeded:
            delivered = {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
            if sent.to_console:
                delivered["delivered_to_console"] = True
            same_version.update(**delivered)
        elif now - delivery.created_at >= GIVE_UP_AFTER:
            same_version.update(status="failed", next_attempt_at=None)
            logger.error("gave up delivering %s", what)
        else:
            same_version.update(next_attempt_at=now + delivery_backoff(attempts=delivery.attempts))
    if not sent.succeeded:
        logger.warning("delivery of %s failed: %s", what, sent.error)


def deliveries_due(*, queryset: QuerySet, now: datetime, limit: int = 500) -> list[int]:
    return list(
        queryset.filter(status="pending", next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )
