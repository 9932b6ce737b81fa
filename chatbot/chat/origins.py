"""Which pages may open a bot's chat: Parley's own (the chat page in its iframe) and the bot's allowed sites."""

import re
from urllib.parse import urlsplit

from django.conf import settings

from chatbot.models import Bot

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# An origin exactly: http(s), a host name (internationalised ones in their xn-- form) or an IP address, a port. No
# path, no user, no wildcard, no space: the value goes into the chat page's Content-Security-Policy as one source.
_ORIGIN = re.compile(rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::\d{{1,5}})?/?$")
# What is read from a stored value: the same, with a path left over from before origins were checked (dropped).
_STORED_ORIGIN = re.compile(rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::\d{{1,5}})?(?:/\S*)?$")


def origin_problem(value: str) -> str:
    """Why `value` is not an origin such as https://www.example.com, or "" when it is one."""
    if not _ORIGIN.match(value.strip().lower()):
        return f"“{value}” is not an origin: give https://host or https://host:port, nothing after it."
    if not origin_normalise(value):
        return f"“{value}” has an impossible port or address."
    return ""


def origin_normalise(value: str) -> str:
    """`scheme://host[:port]` in lower case with the default port left out, or "" when `value` is not an origin."""
    value = value.strip().lower()
    if not _STORED_ORIGIN.match(value):
        return ""
    try:
        parts = urlsplit(value)
        port_number = parts.port
    except ValueError:  # a port past 65535, a broken IPv6 address
        return ""
    if not parts.hostname:
        return ""
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{port_number}" if port_number and port_number != default_port else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}"


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
