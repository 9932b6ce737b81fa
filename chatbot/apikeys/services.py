"""API keys: `pk_<prefix>_<secret>`. Only the key's SHA-256 is stored (a random 256-bit secret needs no slow hash);
the prefix finds the row, and tells keys apart in lists."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chatbot.models import ApiKey, Bot
from chatbot.realtime import keys
from chatbot.realtime.connections import sync_client

KEY_START = "pk_"
# Writing last_used_at on every request would cost a write per call; a minute is precise enough to spot unused keys.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *, name: str, bots: list[Bot] | None = None, read_only: bool = False, user=None
) -> tuple[ApiKey, str]:
    """A new key limited to `bots` (none: every bot, also those created later). Returns (the row, the key); the key
    is not stored and cannot be shown again."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        name=name.strip()[:100] or "API key",
        prefix=prefix,
        key_hash=_hash(key),
        read_only=read_only,
        created_by=user if user is not None and getattr(user, "is_authenticated", False) else None,
    )
    if bots:
        api_key.bots.set(bots)
    return api_key, key


def api_key_authenticate(*, key: str, now: datetime | None = None) -> ApiKey | None:
    """The live (not revoked) key `key` is, or None; its last use is recorded (to the minute)."""
    if not key.startswith(KEY_START) or key.count("_") < 2:
        return None
    prefix = key[len(KEY_START) :].split("_", 1)[0]
    api_key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash(key)):
        return None
    now = now or timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(id=api_key.id).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def api_key_revoke(*, api_key: ApiKey, now: datetime | None = None) -> None:
    ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=now or timezone.now())


def api_key_all_bots(*, api_key: ApiKey) -> bool:
    """Whether the key reaches every bot (none was named when it was made)."""
    return not api_key.bots.exists()


def api_key_bots(*, api_key: ApiKey) -> QuerySet[Bot]:
    """The bots the key may reach."""
    return Bot.objects.all() if api_key_all_bots(api_key=api_key) else Bot.objects.filter(api_keys=api_key)


def api_key_rate_limited(*, api_key: ApiKey, per_minute: int) -> int | None:
    """Count one request of the key; when it is over `per_minute` in this minute, the seconds until the next one."""
    now = time.time()
    window = int(now // 60)
    key = keys.rate_key("api", str(api_key.id), window)
    with sync_client().pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, 61)
        count, _ = pipe.execute()
    if count <= per_minute:
        return None
    return max(1, int((window + 1) * 60 - now) + 1)
