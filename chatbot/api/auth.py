"""Who calls: `Authorization: Bearer <key>`. A missing, unknown or revoked key gets 401; a key over its rate gets
429 with Retry-After; a read-only key gets 403 on writes; a bot (or anything of a bot) outside the key's reach is a
404, as if it did not exist."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer

from chatbot.apikeys.services import api_key_all_bots, api_key_authenticate, api_key_bots, api_key_rate_limited
from chatbot.models import ApiKey, Bot, Conversation


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ApiKeyAuth(HttpBearer):
    openapi_description = "An API key made with `manage.py createapikey` or in the dashboard (Integrations)."

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        api_key = api_key_authenticate(key=token.strip())
        if api_key is None:
            return None
        retry_after = api_key_rate_limited(api_key=api_key, per_minute=settings.API_REQUESTS_PER_MINUTE_PER_KEY)
        if retry_after is not None:
            raise RateLimited(retry_after)
        return api_key


def writable(request: HttpRequest) -> ApiKey:
    api_key: ApiKey = request.auth
    if api_key.read_only:
        raise HttpError(403, "This API key is read-only.")
    return api_key


def bot_of(request: HttpRequest, slug: str, *, write: bool = False) -> Bot:
    """The bot with `slug` if the key reaches it (404 otherwise); with `write`, the key must not be read-only."""
    api_key = writable(request) if write else request.auth
    bot = api_key_bots(api_key=api_key).filter(slug=slug).first()
    if bot is None:
        raise HttpError(404, f"No bot {slug!r}.")
    return bot


def bots_of(request: HttpRequest):
    return api_key_bots(api_key=request.auth)


def reaches_all_bots(request: HttpRequest) -> bool:
    return api_key_all_bots(api_key=request.auth)


def conversation_of(request: HttpRequest, conversation_id: str, *, write: bool = False) -> Conversation:
    api_key = writable(request) if write else request.auth
    conversation = (
        Conversation.objects.select_related("bot", "taken_over_by")
        .filter(id=conversation_id, bot__in=api_key_bots(api_key=api_key))
        .first()
    )
    if conversation is None:
        raise HttpError(404, "No such conversation.")
    return conversation
