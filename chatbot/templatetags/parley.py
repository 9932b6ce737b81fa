from urllib.parse import urlsplit

from django import template

register = template.Library()

SAFE_SCHEMES = {"http", "https", "mailto"}


@register.filter
def safe_url(value) -> str:
    """The URL if it is a web or mail link, else "": stored URLs (citations, pages visitors came from) are data
    from documents and visitors, and a `javascript:` one must never become a link in a staff member's session."""
    text = str(value or "").strip()
    try:
        scheme = urlsplit(text).scheme.lower()
    except ValueError:
        return ""
    return text if scheme in SAFE_SCHEMES else ""
