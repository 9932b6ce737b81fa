"""Verified visitors: the host site passes a logged-in user's id with `hex(HMAC-SHA256(bot identity secret, user
id))`, computed on its server (docs/widget.md). A verified user is the same visitor on every device, so they find
their conversation anywhere; their name and email show in the dashboard and fill the lead form. A missing or
forged hash is ignored (the widget warns in the console)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from chatbot.models import Bot, Conversation

MAX_USER_ID_CHARS = 128
IdentityStatus = Literal["verified", "rejected"]


@dataclass(frozen=True)
class VisitorIdentity:
    user_id: str
    name: str = ""
    email: str = ""


def identity_hash(*, secret: str, user_id: str) -> str:
    """What the host site's server computes: hex HMAC-SHA256 of the user id, keyed with the bot's identity secret."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_verify(*, bot: Bot, user_id: str, user_hash: str) -> bool:
    if not bot.identity_secret or not user_id or not user_hash or len(user_id) > MAX_USER_ID_CHARS:
        return False
    return hmac.compare_digest(identity_hash(secret=bot.identity_secret, user_id=user_id), user_hash.lower())


def identity_clean(*, user_id: str, name: str = "", email: str = "") -> VisitorIdentity:
    """The identity as stored: a name of at most 200 characters, an email only when it is one."""
    email = (email or "").strip()[:254]
    try:
        validate_email(email)
    except ValidationError:
        email = ""
    return VisitorIdentity(user_id=user_id, name=" ".join((name or "").split())[:200], email=email)


def visitor_id_of_user(user_id: str) -> str:
    """The visitor id of a verified user: the same on every device (and for the REST API's `visitor.id`)."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:40]
    return f"user:{digest}"


def conversation_identity_save(*, conversation: Conversation, identity: VisitorIdentity) -> None:
    """Record who the verified visitor is (what they gave last wins; nothing given keeps what was known)."""
    conversation.visitor_verified = True
    conversation.visitor_name = identity.name or conversation.visitor_name
    conversation.visitor_email = identity.email or conversation.visitor_email
    Conversation.objects.filter(pk=conversation.pk).update(
        visitor_verified=True, visitor_name=conversation.visitor_name, visitor_email=conversation.visitor_email
    )
