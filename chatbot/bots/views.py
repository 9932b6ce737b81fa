"""The instance's home page: what this instance is, with the demo bot's widget on it."""

from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_GET

from chatbot.bots.services import DEMO_BOT_SLUG
from chatbot.chat.widget import embed_snippet
from chatbot.models import Bot


@require_GET
def demo_page(request):
    bot = Bot.objects.filter(slug=DEMO_BOT_SLUG).first()
    return render(request, "home.html", {"demo_bot": bot, "snippet": embed_snippet(bot) if bot else ""})


@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico on every page that names no icon (an embedding site's, a JSON view)."""
    return redirect(static("parley/favicon.svg"), permanent=True)
