"""Per-address limits on what a chat socket may set off beyond messages: new visitors (each a conversation), leads
(each an email and a webhook), requests for a person (each an alert on every dashboard). One address may be a
whole office behind a NAT, so the limits are generous; they stop a script, not a team. Counted in Redis, so they
hold across Daphne processes."""

from django.conf import settings

from chatbot.chat.visitors import visitor_token_read
from chatbot.models import Bot
from chatbot.realtime import limits

HOUR_S = 3600


async def new_visitor_limited(*, bot: Bot, visitor_token: str | None, client_ip: str) -> bool:
    """Whether a `hello` without a valid visitor token (a new visitor, so a new conversation) is over its address's
    limit. A returning visitor is never counted."""
    if visitor_token and visitor_token_read(token=visitor_token, bot_public_id=bot.public_id) is not None:
        return False
    return await limits.rate_limit_hit(
        scope="new-visitor", identity=client_ip, limit=settings.CHAT_NEW_VISITORS_PER_MINUTE_PER_IP, window_s=60
    )


async def new_conversation_limited_for_address(*, client_ip: str) -> bool:
    """Whether a visitor's "New conversation" (a conversation row and a `conversation.started` webhook each) is over
    its address's limit: the same as for new visitors, counted apart."""
    return await limits.rate_limit_hit(
        scope="new-conversation-ip",
        identity=client_ip,
        limit=settings.CHAT_NEW_VISITORS_PER_MINUTE_PER_IP,
        window_s=60,
    )


async def lead_submit_limited_for_address(*, client_ip: str) -> bool:
    return await limits.rate_limit_hit(
        scope="lead-ip", identity=client_ip, limit=settings.CHAT_LEADS_PER_HOUR_PER_IP, window_s=HOUR_S
    )


async def handoff_request_limited(*, client_ip: str) -> bool:
    return await limits.rate_limit_hit(
        scope="handoff-ip", identity=client_ip, limit=settings.CHAT_HANDOFF_REQUESTS_PER_HOUR_PER_IP, window_s=HOUR_S
    )
