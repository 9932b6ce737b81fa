"""The instance's home page: what this instance is, with the demo bot's widget on it."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from chatbot.bots.services import DEMO_BOT_SLUG
from chatbot.chat.widget import embed_snippet
from chatbot.models import Bot


@require_GET
def demo_page(request):
    bot = Bot.objects.filter(slug=DEMO_BOT_SLUG).first()
    return render(request, "home.html", {"demo_bot": bot, "snippet": embed_snippet(bot) if bot else ""})
