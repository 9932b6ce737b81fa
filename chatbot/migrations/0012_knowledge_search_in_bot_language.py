# Each bot's knowledge base is searched in the bot's language from now on (knowledge migration 0007 gave every
# knowledge base `english`, what it was indexed with). Updating the chunks' configuration recomputes their
# generated search vectors, and the term-statistics triggers follow.

from django.db import migrations

# The mapping of knowledge.models.search_config_for_language, frozen here as migrations must be.
SEARCH_CONFIGS = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}


def search_in_bot_language(apps, schema_editor):
    Bot = apps.get_model("chatbot", "Bot")
    KnowledgeBase = apps.get_model("knowledge", "KnowledgeBase")
    Chunk = apps.get_model("knowledge", "Chunk")
    for bot in Bot.objects.exclude(knowledge_base=None).order_by("updated_at"):
        code = (bot.language or "").strip().lower().replace("_", "-").split("-")[0]
        config = SEARCH_CONFIGS.get(code, "simple")
        if KnowledgeBase.objects.filter(id=bot.knowledge_base_id).exclude(search_config=config).update(
            search_config=config
        ):
            Chunk.objects.filter(knowledge_base_id=bot.knowledge_base_id).update(search_config=config)


def search_in_english(apps, schema_editor):
    KnowledgeBase = apps.get_model("knowledge", "KnowledgeBase")
    Chunk = apps.get_model("knowledge", "Chunk")
    KnowledgeBase.objects.exclude(search_config="english").update(search_config="english")
    Chunk.objects.exclude(search_config="english").update(search_config="english")


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0011_bot_max_passages"),
        ("knowledge", "0007_search_config_per_knowledge_base"),
    ]

    operations = [migrations.RunPython(search_in_bot_language, search_in_english)]
