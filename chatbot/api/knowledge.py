"""A bot's knowledge: its sources with their ingestion status, adding (a URL, a sitemap, a site, an FAQ entry, a
file), re-syncing and removing them. Ingestion runs in a worker; poll a source for its status."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from ninja import File, Router, Status, UploadedFile
from ninja.errors import HttpError

from chatbot.api.auth import bot_of
from chatbot.api.schemas import ArchiveUploadOut, Error, SourceIn, SourceOut
from chatbot.bots.sources import source_add_and_ingest, source_resync, sources_add_uploads
from knowledge.archives import is_zip
from knowledge.models import Source
from knowledge.services import source_delete

router = Router(tags=["knowledge"])

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def _knowledge_bot(request, slug: str, *, write: bool = False):
    bot = bot_of(request, slug, write=write)
    if bot.knowledge_base_id is None:
        raise HttpError(409, "This bot has no knowledge base.")
    return bot


def _source_of(bot, source_id: int) -> Source:
    return get_object_or_404(Source, id=source_id, knowledge_base_id=bot.knowledge_base_id)


@router.get("/bots/{slug}/sources", response={200: list[SourceOut], 404: Error, 409: Error})
def sources_list(request, slug: str):
    return list(_knowledge_bot(request, slug).knowledge_base.sources.order_by("-created_at"))


# Before the routes with a {source_id}: Django tries the URL patterns in order.
@router.post(
    "/bots/{slug}/sources/upload",
    response={202: SourceOut | ArchiveUploadOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Upload a file (PDF, DOCX, HTML, Markdown, text, CSV), or a .zip archive of them",
)
def source_upload(request, slug: str, file: File[UploadedFile]):
    """A document gives its source. A .zip archive is unpacked as in the dashboard (same limits and bomb guards):
    `{"sources": [...], "refused": [...]}`, a source per document inside it and a sentence per member left out;
    400 when nothing in it can be added. A file named as one already uploaded replaces it."""
    bot = _knowledge_bot(request, slug, write=True)
    if file.size > MAX_UPLOAD_BYTES:
        raise HttpError(400, f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    data = file.read()
    report = sources_add_uploads(bot=bot, uploads=[(file.name, data)])
    sources = report.added + report.updated
    if not sources:
        raise HttpError(400, " ".join(report.refused) or "No document was added.")
    if not is_zip(filename=file.name, data=data):
        return Status(202, sources[0])
    return Status(202, {"sources": sources, "refused": report.refused})


@router.get("/bots/{slug}/sources/{source_id}", response={200: SourceOut, 404: Error, 409: Error})
def source_read(request, slug: str, source_id: int):
    return _source_of(_knowledge_bot(request, slug), source_id)


@router.post(
    "/bots/{slug}/sources",
    response={202: SourceOut, 400: Error, 403: Error, 404: Error, 409: Error},
    summary="Add a web page, a sitemap, a site or an FAQ entry; ingestion starts at once",
)
def source_create(request, slug: str, body: SourceIn):
    bot = _knowledge_bot(request, slug, write=True)
    if body.kind == "faq":
        if not body.question.strip() or not body.answer.strip():
            raise HttpError(400, "An FAQ entry needs a question and an answer.")
        return Status(202, source_add_and_ingest(bot=bot, kind="faq", question=body.question, answer=body.answer))
    if not body.url.startswith(("http://", "https://")):
        raise HttpError(400, "Give the http(s) address of the page, sitemap or site.")
    site = (
        {
            "max_depth": body.max_depth,
            "include_patterns": body.include_patterns or None,
            "exclude_patterns": body.exclude_patterns or None,
        }
        if body.kind == "site"
        else {}
    )
    source = source_add_and_ingest(
        bot=bot,
        kind=body.kind,
        url=body.url,
        resync_every_hours=body.resync_every_hours,
        max_pages=body.max_pages,
        **site,
    )
    return Status(202, source)


@router.post("/bots/{slug}/sources/{source_id}/resync", response={202: SourceOut, 403: Error, 404: Error, 409: Error})
def source_resync_start(request, slug: str, source_id: int):
    source = _source_of(_knowledge_bot(request, slug, write=True), source_id)
    source_resync(source=source)
    source.refresh_from_db()
    return Status(202, source)


@router.delete("/bots/{slug}/sources/{source_id}", response={204: None, 403: Error, 404: Error, 409: Error})
def source_remove(request, slug: str, source_id: int):
    source_delete(source=_source_of(_knowledge_bot(request, slug, write=True), source_id))
    return Status(204, None)
