# Each knowledge base has its own text-search configuration (the language of the bot answering from it), and each
# chunk's generated search vector uses the configuration copied onto the chunk. Existing knowledge bases and chunks
# get `english`, what they were indexed with, so their vectors and term statistics stay the same. (The chatbot
# migration 0012 then gives each knowledge base the configuration of its bot's language.)

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations, models

import knowledge.models


def _search_vector():
    return models.GeneratedField(
        db_persist=True,
        expression=django.contrib.postgres.search.CombinedSearchVector(
            django.contrib.postgres.search.SearchVector("heading_text", config=models.F("search_config"), weight="A"),
            "||",
            django.contrib.postgres.search.SearchVector("text", config=models.F("search_config"), weight="B"),
            django.contrib.postgres.search.SearchConfig(models.F("search_config")),
        ),
        output_field=django.contrib.postgres.search.SearchVectorField(),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0006_source_site"),
    ]

    operations = [
        migrations.AddField(
            model_name="knowledgebase",
            name="search_config",
            field=knowledge.models.SearchConfigField(
                default="english",
                db_default="english",
                help_text="PostgreSQL text-search configuration: stemming and stop words.",
                max_length=63,
            ),
        ),
        migrations.AddField(
            model_name="chunk",
            name="search_config",
            field=knowledge.models.SearchConfigField(default="english", db_default="english", max_length=63),
        ),
        # PostgreSQL cannot change a generated column's expression: drop it (with its index) and add it again.
        # ALTER TABLE fires no triggers, and the new vectors equal the old ones, so `knowledge_term` stays right.
        migrations.RemoveIndex(model_name="chunk", name="chunk_search_vector_gin"),
        migrations.RemoveField(model_name="chunk", name="search_vector"),
        migrations.AddField(model_name="chunk", name="search_vector", field=_search_vector()),
        migrations.AddIndex(
            model_name="chunk",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
        ),
    ]
