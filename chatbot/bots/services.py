"""Writes of the bot domain: plain functions, keyword-only arguments."""

from django.conf import settings
from django.db import transaction

from chatbot.models import Bot, new_webhook_secret
from knowledge.models import search_config_for_language
from knowledge.services import knowledge_base_create, knowledge_base_search_config_set

DEMO_BOT_SLUG = "demo"


class BotExists(Exception):
    pass


@transaction.atomic
def bot_create(*, slug: str, name: str, with_knowledge_base: bool = True, **fields) -> Bot:
    """A bot with a knowledge base of its own (unless one is given or `with_knowledge_base` is off)."""
    if Bot.objects.filter(slug=slug).exists():
        raise BotExists(f"a bot with the slug '{slug}' already exists")
    if with_knowledge_base and "knowledge_base" not in fields:
        fields["knowledge_base"] = knowledge_base_create(name=f"{name} knowledge")
    bot = Bot.objects.create(slug=slug, name=name, **fields)
    bot_search_language_apply(bot=bot)
    return bot


def bot_search_language_apply(*, bot: Bot) -> bool:
    """Search the bot's knowledge base in the bot's language (stemming, stop words): call it whenever a bot is
    created or saved. When the language changed, the chunks' search vectors and term statistics are rebuilt in
    one UPDATE (nothing is embedded again). A knowledge base shared by bots follows the last one saved. Returns
    whether anything was re-indexed."""
    if bot.knowledge_base_id is None:
        return False
    return knowledge_base_search_config_set(
        knowledge_base_id=bot.knowledge_base_id, search_config=search_config_for_language(bot.language)
    )


def bot_ensure_demo() -> tuple[Bot, bool]:
    """The demo bot `up` loads once; returns (bot, created)."""
    existing = Bot.objects.filter(slug=DEMO_BOT_SLUG).first()
    if existing:
        return existing, False
    origin = settings.SITE_URL
    bot = bot_create(
        slug=DEMO_BOT_SLUG,
        name="Parley Demo",
        persona=(
            "You are Parley's demo assistant. You help people evaluate, install and run Parley, a self-hosted "
            "chatbot platform. Be friendly, concise and concrete."
        ),
        greeting="Hi! I'm the Parley demo. Ask me how Parley works, how to install it or how to embed it.",
        allowed_origins=sorted({origin, "http://localhost:8000", "http://127.0.0.1:8000"}),
    )
    return bot, True


def bot_demo_documentation_sources(*, bot: Bot) -> list:
    """Parley's own README and docs/ as the demo bot's knowledge, so a new user can ask the demo about Parley."""
    from knowledge.services import source_add_file

    base = settings.BASE_DIR
    paths = [base / "README.md", *sorted((base / "docs").rglob("*.md"))]
    return [
        source_add_file(
            knowledge_base=bot.knowledge_base,
            filename=path.name,
            data=path.read_bytes(),
            title=str(path.relative_to(base)),
        )
        for path in paths
        if path.is_file()
    ]


# Which secrets of a bot can be rotated from its dashboard page, and the field each one lives in.
ROTATABLE_SECRETS = {"webhook": "crm_webhook_secret", "identity": "identity_secret"}


def bot_secret_rotate(*, bot: Bot, which: str) -> str:
    """A new webhook secret (signs the bot's lead webhook) or identity secret (verifies its logged-in visitors);
    the old one stops working at once. Returns the new secret."""
    field = ROTATABLE_SECRETS[which]
    secret = new_webhook_secret()
    Bot.objects.filter(id=bot.id).update(**{field: secret})
    setattr(bot, field, secret)
    return secret
