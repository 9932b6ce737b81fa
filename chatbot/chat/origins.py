"""Which pages may open a bot's chat: Parley's own (the chat page in its iframe) and the bot's allowed sites."""

from urllib.parse import urlsplit

from django.conf import settings

from chatbot.models import Bot


def origin_normalise(value: str) -> str:
    """`scheme://host[:port]` in lower case with the default port left out, or "" when `value` is not an origin."""
    parts = urlsplit(value.strip().lower())
    if not parts.scheme or not parts.hostname:
        return ""
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def origin_allowed(*, origin: str, host: str, bot: Bot) -> bool:
    """Parley's own pages (the chat page in its iframe) or one of the bot's allowed sites."""
    origin = origin_normalise(origin)
    if not origin:
        return False
    own = {origin_normalise(settings.SITE_URL), origin_normalise(f"http://{host}"), origin_normalise(f"https://{host}")}
    allowed = {origin_normalise(value) for value in bot.allowed_origins} | own
    return origin in allowed


def bot_frame_ancestors(bot: Bot) -> list[str]:
    """The bot's allowed sites as CSP sources for `frame-ancestors` of its chat page."""
    return sorted({origin for value in bot.allowed_origins if (origin := origin_normalise(value))})
