"""Visitors have no account: the server issues a signed token that the widget keeps and presents again."""

import secrets

from django.core import signing

_SALT = "parley.visitor"
TOKEN_MAX_AGE_S = 180 * 24 * 3600


def visitor_token_issue(*, bot_public_id: str, visitor_id: str | None = None) -> tuple[str, str]:
    """A new token for a visitor of one bot; returns (token, visitor_id)."""
    visitor_id = visitor_id or secrets.token_urlsafe(16)
    token = signing.TimestampSigner(salt=_SALT).sign_object({"b": bot_public_id, "v": visitor_id})
    return token, visitor_id


def visitor_token_read(*, token: str, bot_public_id: str) -> str | None:
    """The visitor id in a token, or None if it is forged, expired or for another bot."""
    try:
        payload = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=TOKEN_MAX_AGE_S)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or payload.get("b") != bot_public_id or not isinstance(payload.get("v"), str):
        return None
    return payload["v"]
