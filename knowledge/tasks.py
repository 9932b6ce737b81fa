from celery import shared_task

from knowledge.models import Source
from knowledge.services import source_ingest, sources_due_for_resync


# acks_late: a source whose ingestion was cut short (worker stopped) is ingested again; unchanged documents skip.
@shared_task(ignore_result=True, acks_late=True)
def ingest_source(source_id: int) -> None:
    source = Source.objects.filter(id=source_id).first()
    if source is not None:
        source_ingest(source=source)


@shared_task(ignore_result=True)
def resync_due_sources() -> None:
    for source in sources_due_for_resync():
        ingest_source.delay(source.id)
