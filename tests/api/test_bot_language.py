"""Changing a bot's language through the API searches its knowledge in that language."""

from knowledge.models import Chunk, KnowledgeBase
from knowledge.services import source_add_faq, source_ingest


def test_patching_the_language_reindexes_the_bots_knowledge(api, acme):
    source_ingest(
        source=source_add_faq(
            knowledge_base=acme.knowledge_base, question="Versand?", answer="Alle Lieferungen in drei Tagen."
        )
    )

    response = api.patch("/bots/acme", {"language": "de"})

    assert response.status_code == 200
    assert KnowledgeBase.objects.get(id=acme.knowledge_base_id).search_config == "german"
    assert set(
        Chunk.objects.filter(knowledge_base_id=acme.knowledge_base_id).values_list("search_config", flat=True)
    ) == {"german"}
