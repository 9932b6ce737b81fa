from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from knowledge.models import Source
from knowledge.services import source_ingest, sources_due_for_resync


# acks_late: a source whose ingestion was cut short (worker stopped) is ingested again; unchanged documents skip.
@shared_task(ignore_result=True, acks_late=True)
def ingest_source(source_id: int) -> None:
    source = Source.objects.filter(id=source_id).first()
    if source is not None:
        source_ingest(source=source, on_progress=progress_callback())


@shared_task(ignore_result=True)
def resync_due_sources() -> None:
    for source in sources_due_for_resync():
        ingest_source.delay(source.id)


def progress_callback():
    """The project's hook for ingestion progress (settings.KNOWLEDGE_PROGRESS_CALLBACK), or None."""
    path = getattr(settings, "KNOWLEDGE_PROGRESS_CALLBACK", "")
    return import_string(path) if path else None


def source_ingest_after_commit(source: Source) -> None:
    """Queue the source's ingestion once the transaction that added it commits (at once outside a transaction)."""
    transaction.on_commit(lambda: ingest_source.delay(source.id))
