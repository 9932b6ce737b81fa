"""The embeddable widget: the loader script and the chat page it frames."""

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db.models import CharField, F, Func, Value
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from chatbot.answers.guard import allowed_hosts_from
from chatbot.chat.origins import bot_frame_ancestors
from chatbot.models import Bot
from knowledge.models import Document

SUPPORTED_LANGUAGES = ("en", "fr", "de")
LOADER_MAX_AGE_S = 300


def _loader_source() -> bytes:
    path = finders.find("parley/widget.js")
    if path is None:
        raise Http404("widget.js is missing")
    with open(path, "rb") as loader:
        return loader.read()


@require_GET
def widget_loader(request):
    """The one script a site adds. A stable URL with a short cache, so fixes reach every site within minutes."""
    response = HttpResponse(_loader_source(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={LOADER_MAX_AGE_S}"
    response["Access-Control-Allow-Origin"] = "*"
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


def _language(request, bot: Bot) -> str:
    for candidate in (request.GET.get("lang", ""), bot.language, "en"):
        code = candidate.lower().split("-")[0]
        if code in SUPPORTED_LANGUAGES:
            return code
    return "en"


# The host of a URL, in SQL: one row per host of a knowledge base's documents instead of one per document.
_URL_HOST = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^/?#@]*@)?([^/:?#]+)"


def bot_link_hosts(bot: Bot) -> list[str]:
    """The hosts the bot's answers may link to, for markdown.js to enforce as well: the hosts of its documents, its
    allowed sites and this instance (what the output guard allows any answer of the bot; it checks each one)."""
    urls = [*bot.allowed_origins, settings.SITE_URL]
    if bot.knowledge_base_id is not None:
        documents = Document.objects.filter(knowledge_base_id=bot.knowledge_base_id).exclude(url="")
        hosts = documents.annotate(
            host=Func(F("url"), Value(_URL_HOST), function="substring", output_field=CharField())
        ).values_list("host", flat=True)
        urls += [f"https://{host}" for host in hosts.distinct() if host]
    return sorted(allowed_hosts_from(urls))


def embed_snippet(bot: Bot) -> str:
    return f'<script src="{settings.SITE_URL}/widget.js" data-bot="{bot.public_id}" async></script>'


def chat_page_csp(*, bot: Bot, host: str) -> str:
    ancestors = " ".join(["'self'", *bot_frame_ancestors(bot)])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' https: data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
            f"frame-ancestors {ancestors}",
        ]
    )


@require_GET
@xframe_options_exempt  # framing is governed by the CSP frame-ancestors of each bot instead
def chat_page(request, public_id: str):
    bot = get_object_or_404(Bot, public_id=public_id)
    lang = _language(request, bot)
    embed = request.GET.get("embed") == "1"
    config = {
        "bot": {"name": bot.name, "publicId": bot.public_id, "greeting": bot.greeting, "color": bot.color},
        "wsPath": f"/ws/chat/{bot.public_id}/",
        "lang": lang,
        "embed": embed,
        "parentOrigin": None,
        "linkHosts": bot_link_hosts(bot),
    }
    response = render(request, "chatbot/chat_page.html", {"bot": bot, "lang": lang, "embed": embed, "config": config})
    response["Content-Security-Policy"] = chat_page_csp(bot=bot, host=request.get_host())
    return response
