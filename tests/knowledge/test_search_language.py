"""Full-text search in the knowledge base's language: stemming and stop words of its PostgreSQL configuration."""

import pytest
from django.db import ProgrammingError, connection, transaction

from knowledge.models import Chunk, KnowledgeBase, Term, search_config_for_language
from knowledge.retrieval import chunk_search
from knowledge.services import (
    knowledge_base_create,
    knowledge_base_search_config_set,
    source_add_faq,
    source_add_file,
    source_ingest,
)

pytestmark = pytest.mark.django_db(transaction=True)

FRENCH_PAGE = """# Livraison et remboursement

## Livraisons

Les livraisons partent chaque matin. Les colis sont livrés en trois jours ouvrés.

## Remboursements

Les remboursements arrivent sur votre compte bancaire sous dix jours.
"""

GERMAN_PAGE = """# Versand

## Lieferungen

Alle Lieferungen erfolgen innerhalb von drei Werktagen. Pakete werden von der Post zugestellt.
"""


def knowledge_base_with(page: str, *, search_config: str) -> KnowledgeBase:
    knowledge_base = knowledge_base_create(name="Boutique", search_config=search_config)
    source_ingest(source=source_add_file(knowledge_base=knowledge_base, filename="aide.md", data=page.encode()))
    return knowledge_base


def text_hits(knowledge_base: KnowledgeBase, question: str) -> list[str]:
    return [
        chunk.text for chunk in chunk_search(knowledge_base_id=knowledge_base.id, query=question, mode="text").chunks
    ]


def term_counts(knowledge_base_id: int) -> dict[str, int]:
    return dict(Term.objects.filter(knowledge_base_id=knowledge_base_id, chunks__gt=0).values_list("lexeme", "chunks"))


def term_counts_recomputed(knowledge_base_id: int) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT lexeme, count(*) FROM knowledge_chunk, unnest(tsvector_to_array(search_vector)) AS lexeme"
            " WHERE knowledge_base_id = %s GROUP BY 1 UNION ALL"
            " SELECT '', count(*) FROM knowledge_chunk WHERE knowledge_base_id = %s HAVING count(*) > 0",
            [knowledge_base_id, knowledge_base_id],
        )
        return dict(cursor.fetchall())


@pytest.mark.parametrize(
    ("language", "config"),
    [
        ("en", "english"),
        ("fr", "french"),
        ("de", "german"),
        ("es", "spanish"),
        ("it", "italian"),
        ("pt", "portuguese"),
        ("nl", "dutch"),
        ("fr-CA", "french"),
        ("pt_BR", "portuguese"),
        ("DE", "german"),
        ("ja", "simple"),
        ("", "simple"),
    ],
)
def test_each_language_is_searched_with_its_postgresql_configuration(language, config):
    assert search_config_for_language(language) == config


def test_a_knowledge_base_is_searched_in_english_unless_told_otherwise():
    assert knowledge_base_create(name="Docs").search_config == "english"


def test_the_database_refuses_a_configuration_it_does_not_have():
    with pytest.raises(ProgrammingError, match="klingon"), transaction.atomic():
        knowledge_base_create(name="Docs", search_config="klingon")


def test_a_french_knowledge_base_finds_plural_and_inflected_words_from_the_question():
    knowledge_base = knowledge_base_with(FRENCH_PAGE, search_config="french")

    assert any("Les livraisons partent" in text for text in text_hits(knowledge_base, "livraison"))
    # "remboursé" and "remboursements" share the French stem "rembours"; the English stemmer leaves them apart.
    assert any(
        "Les remboursements arrivent" in text for text in text_hits(knowledge_base, "Quand serai-je remboursé ?")
    )
    assert all(chunk.search_config == "french" for chunk in Chunk.objects.filter(knowledge_base=knowledge_base))
    # French stop words are not indexed.
    assert not {"en", "votre", "sont", "sur"} & set(term_counts(knowledge_base.id))


def test_the_same_french_page_searched_in_english_misses_the_inflected_word():
    knowledge_base = knowledge_base_with(FRENCH_PAGE, search_config="english")

    assert not any("Les remboursements arrivent" in text for text in text_hits(knowledge_base, "remboursé"))


def test_a_german_knowledge_base_finds_the_plural_from_the_singular():
    knowledge_base = knowledge_base_with(GERMAN_PAGE, search_config="german")

    assert any("Alle Lieferungen" in text for text in text_hits(knowledge_base, "Wann kommt meine Lieferung?"))
    assert not any("Alle Lieferungen" in text for text in text_hits(knowledge_with_english(), "Lieferung"))


def knowledge_with_english() -> KnowledgeBase:
    return knowledge_base_with(GERMAN_PAGE, search_config="english")


def test_an_english_knowledge_base_searches_as_before():
    knowledge_base = knowledge_base_create(name="Docs")
    source_ingest(
        source=source_add_faq(
            knowledge_base=knowledge_base, question="Can I get my money back?", answer="Refunds take ten days."
        )
    )

    assert any("Refunds take ten days." in text for text in text_hits(knowledge_base, "refund"))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM knowledge_chunk WHERE knowledge_base_id = %s"
            " AND search_vector = setweight(to_tsvector('english', heading_text), 'A')"
            " || setweight(to_tsvector('english', text), 'B')",
            [knowledge_base.id],
        )
        assert cursor.fetchone()[0] == Chunk.objects.filter(knowledge_base=knowledge_base).count() > 0


def test_changing_the_configuration_reindexes_the_chunks_and_their_term_statistics_without_embedding_again():
    knowledge_base = knowledge_base_with(FRENCH_PAGE, search_config="english")
    embeddings = dict(Chunk.objects.filter(knowledge_base=knowledge_base).values_list("id", "embedding"))
    assert not any("Les remboursements" in text for text in text_hits(knowledge_base, "remboursé"))

    assert knowledge_base_search_config_set(knowledge_base_id=knowledge_base.id, search_config="french") is True

    assert any("Les remboursements" in text for text in text_hits(knowledge_base, "remboursé"))
    assert term_counts(knowledge_base.id) == term_counts_recomputed(knowledge_base.id)
    assert "rembours" in term_counts(knowledge_base.id) and "les" not in term_counts(knowledge_base.id)
    after = dict(Chunk.objects.filter(knowledge_base=knowledge_base).values_list("id", "embedding"))
    assert after.keys() == embeddings.keys()
    assert all(list(after[chunk_id]) == list(embeddings[chunk_id]) for chunk_id in after)
    # Setting the configuration it already has changes nothing.
    assert knowledge_base_search_config_set(knowledge_base_id=knowledge_base.id, search_config="french") is False


def test_a_document_ingested_after_a_change_of_configuration_uses_the_new_one():
    knowledge_base = knowledge_base_create(name="Boutique")
    knowledge_base_search_config_set(knowledge_base_id=knowledge_base.id, search_config="german")

    source_ingest(
        source=source_add_file(knowledge_base=knowledge_base, filename="versand.md", data=GERMAN_PAGE.encode())
    )

    assert set(Chunk.objects.filter(knowledge_base=knowledge_base).values_list("search_config", flat=True)) == {
        "german"
    }
    assert any("Alle Lieferungen" in text for text in text_hits(knowledge_base, "Lieferung"))
    assert term_counts(knowledge_base.id) == term_counts_recomputed(knowledge_base.id)
