"""A bot's knowledge is searched in the bot's language, and changing the language re-indexes it."""

import importlib

import pytest
from django.apps import apps
from django.contrib.admin.sites import site
from django.urls import reverse

from chatbot.bots import botfiles
from chatbot.bots.services import bot_create
from chatbot.models import Bot
from knowledge.models import Chunk, KnowledgeBase, Term
from knowledge.retrieval import chunk_search
from knowledge.services import knowledge_base_create, source_add_file, source_ingest

from .conftest import logged_in

pytestmark = pytest.mark.django_db(transaction=True)

FRENCH_PAGE = b"""# Remboursements

Les remboursements arrivent sur votre compte bancaire sous dix jours.
"""


def finds_the_refunds(bot: Bot) -> bool:
    result = chunk_search(knowledge_base_id=bot.knowledge_base_id, query="Quand serai-je rembours\u00e9 ?", mode="text")
    return any("Les remboursements arrivent" in chunk.text for chunk in result.chunks)


def search_config(bot: Bot) -> str:
    return KnowledgeBase.objects.get(id=bot.knowledge_base_id).search_config


@pytest.fixture
def bot_with_french_page(bot):
    source_ingest(source=source_add_file(knowledge_base=bot.knowledge_base, filename="aide.md", data=FRENCH_PAGE))
    return bot


def test_a_new_bot_searches_its_knowledge_in_its_language():
    assert search_config(bot_create(slug="boutique", name="Boutique", language="fr")) == "french"
    assert search_config(bot_create(slug="laden", name="Laden", language="de")) == "german"
    assert search_config(bot_create(slug="shop", name="Shop")) == "english"
    assert search_config(bot_create(slug="mise", name="Mise", language="ja")) == "simple"


def test_a_new_bot_given_a_knowledge_base_sets_its_language():
    shared = knowledge_base_create(name="Shared")

    bot_create(slug="boutique", name="Boutique", language="fr", knowledge_base=shared)

    shared.refresh_from_db()
    assert shared.search_config == "french"


def test_changing_the_bots_language_in_the_dashboard_reindexes_its_knowledge(admin, bot_with_french_page):
    bot = bot_with_french_page
    assert not finds_the_refunds(bot)
    form = {"name": bot.name, "slug": bot.slug, "color": "#4f46e5", "language": "fr", "temperature": "0.3",
            "allowed_origins": "https://www.acme.test", "max_new_tokens": "512",
            "lead_retention_days": "365"}  # fmt: skip

    response = logged_in(admin).post(reverse("dashboard:bot-edit", args=[bot.slug]), form)

    assert response.status_code == 302
    assert search_config(bot) == "french"
    assert set(
        Chunk.objects.filter(knowledge_base_id=bot.knowledge_base_id).values_list("search_config", flat=True)
    ) == {"french"}
    assert finds_the_refunds(bot)
    lexemes = set(
        Term.objects.filter(knowledge_base_id=bot.knowledge_base_id, chunks__gt=0).values_list("lexeme", flat=True)
    )
    assert "rembours" in lexemes and "remboursements" not in lexemes


def test_importing_a_bot_file_with_another_language_reindexes_its_knowledge(bot_with_french_page):
    bot = bot_with_french_page
    document = botfiles.bot_config_export(bot=bot)
    document["bot"]["language"] = "fr"

    botfiles.bot_config_import(document=document)

    assert search_config(bot) == "french"
    assert finds_the_refunds(bot)


def test_changing_the_language_in_the_admin_reindexes_its_knowledge(bot_with_french_page):
    bot = bot_with_french_page
    bot.language = "fr"

    site._registry[Bot].save_model(request=None, obj=bot, form=None, change=True)

    assert finds_the_refunds(bot)


def test_the_migration_searches_existing_knowledge_in_each_bots_language(bot_with_french_page):
    bot = bot_with_french_page
    Bot.objects.filter(id=bot.id).update(language="fr-CA")
    english = bot_create(slug="shop", name="Shop", language="en")
    migration = importlib.import_module("chatbot.migrations.0012_knowledge_search_in_bot_language")

    migration.search_in_bot_language(apps, None)

    assert (search_config(bot), search_config(english)) == ("french", "english")
    assert finds_the_refunds(bot)
    migration.search_in_english(apps, None)
    assert search_config(bot) == "english" and not finds_the_refunds(bot)
