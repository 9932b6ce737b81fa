"""Ingestion progress, pushed to the administrators' dashboards as it happens (the knowledge page listens on the
dashboard socket instead of polling). Called by the knowledge library through settings.KNOWLEDGE_PROGRESS_CALLBACK,
in the worker that ingests, and by `manage.py ingest`."""

import logging
import threading
import time

from chatbot.realtime.protocol import ADMINS_GROUP, SourceProgress, source_event
from chatbot.realtime.relay import relay
from knowledge.models import Source

logger = logging.getLogger(__name__)

# A crawl of hundreds of pages reports every page; the page needs no more than a few updates a second.
MIN_INTERVAL_S = 0.25
_last_sent: dict[int, float] = {}
_lock = threading.Lock()


def source_progress(source: Source) -> SourceProgress:
    return SourceProgress(
        id=source.id,
        knowledge_base_id=source.knowledge_base_id,
        status=source.status,
        status_label=source.get_status_display(),
        done=source.documents_done,
        total=source.documents_total,
        error=source.error,
        private_address_refused=not source.allow_private_addresses and "private or internal address" in source.error,
        last_synced_at=source.last_synced_at.isoformat() if source.last_synced_at else None,
    )


def source_progress_publish(source: Source) -> None:
    """Send the source's progress to the administrators' dashboards; at most every MIN_INTERVAL_S while it runs,
    always once it has ended. A Redis hiccup never fails the ingestion."""
    final = source.status in (Source.Status.READY, Source.Status.FAILED)
    now = time.monotonic()
    with _lock:
        if not final and now - _last_sent.get(source.id, float("-inf")) < MIN_INTERVAL_S:
            return
        if final:
            _last_sent.pop(source.id, None)
        else:
            _last_sent[source.id] = now
    try:
        relay().group_send(ADMINS_GROUP, source_event(source=source_progress(source)))
    except Exception:
        logger.exception("could not tell the dashboards about source %s", source.id)
