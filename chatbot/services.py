"""Writes of the conversation domain: plain functions, keyword-only arguments."""

from django.db import transaction

from chatbot.models import Bot

DEMO_BOT_SLUG = "demo"


def bot_create(*, slug: str, name: str, **fields) -> Bot:
    return Bot.objects.create(slug=slug, name=name, **fields)


@transaction.atomic
def bot_ensure_demo() -> tuple[Bot, bool]:
    """The demo bot `up` loads once; returns (bot, created)."""
    existing = Bot.objects.filter(slug=DEMO_BOT_SLUG).first()
    if existing:
        return existing, False
    bot = bot_create(
        slug=DEMO_BOT_SLUG,
        name="Parley Demo",
        persona=(
            "You are Parley's demo assistant. You help people evaluate and run Parley, a self-hosted chatbot "
            "platform. Be friendly, concise and concrete."
        ),
        greeting="Hi! I'm the Parley demo. Ask me how Parley works, how to install it or how to embed it.",
        allowed_origins=["http://localhost:8000", "http://127.0.0.1:8000"],
    )
    return bot, True
