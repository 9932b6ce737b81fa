"""A small shop's help pages as a knowledge base, ingested with the real model once per test module."""

import pytest

from knowledge.models import KnowledgeBase, Source
from knowledge.services import knowledge_base_create, source_add_faq, source_add_file, source_delete, source_ingest

HELP_PAGES = {
    "shipping.md": """# Shipping

## Where we ship

We ship to Norway, Sweden, Denmark and Finland. We do not ship to Iceland or outside the Nordic countries.

## Delivery to Norway

Parcels to Norway travel by post and take 5 to 7 working days, customs clearance included.

## Delivery within Sweden

Parcels within Sweden arrive in 1 to 2 working days.
""",
    "returns.md": """# Returns

## Sending something back

You can return an unused kettle within 30 days. Print the return label from your account.

## Refunds

Once the parcel is back in our warehouse, the refund takes about 10 days to reach your bank account.
""",
    "warranty.md": """# Warranty

## How long the warranty lasts

Every kettle has a two-year warranty from the day of delivery.

## Repairs

A repair under warranty takes about three weeks, shipping both ways included.
""",
}


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        knowledge_base = knowledge_base_create(name="Kettle shop")
        for filename, text in HELP_PAGES.items():
            source_ingest(source=source_add_file(knowledge_base=knowledge_base, filename=filename, data=text.encode()))
    yield knowledge_base
    with django_db_blocker.unblock():
        for source in Source.objects.filter(knowledge_base=knowledge_base):
            source_delete(source=source)
        knowledge_base.delete()


def faq_knowledge_base(name: str, faq: list[tuple[str, str]]) -> KnowledgeBase:
    """A knowledge base of question-and-answer sources, ingested."""
    knowledge_base = knowledge_base_create(name=name)
    for question, answer in faq:
        source_ingest(source=source_add_faq(knowledge_base=knowledge_base, question=question, answer=answer))
    return knowledge_base
