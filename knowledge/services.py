"""Ingestion: sources become documents, documents become embedded chunks.

The same functions run in Celery tasks (uploads and web sources added in the dashboard, scheduled re-syncs) and
synchronously in `manage.py ingest`. A document's chunks are replaced in one transaction, so a search never sees
it half-indexed; an unchanged document (same content hash) is skipped; and when a document changes, only chunks
whose text changed are embedded again.
"""

import hashlib
import logging
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone

from knowledge.chunking import chunk_document
from knowledge.crawl import CrawlScope, KnownPage, SiteCrawler
from knowledge.embeddings import get_embedder
from knowledge.models import Chunk, Document, KnowledgeBase, Source
from knowledge.parsing import DocumentParseError, parse_document
from knowledge.web import CrawlSession, FetchedPage, FetchError, FetchLimits, NotModified

logger = logging.getLogger(__name__)

HEADING_SEPARATOR = " › "


@dataclass
class IngestReport:
    documents: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    chunks_embedded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: "IngestReport") -> None:
        for name in ("documents", "indexed", "unchanged", "removed", "chunks", "chunks_embedded"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


# --- creating sources ----------------------------------------------------------------------------------------


def knowledge_base_create(*, name: str, **fields) -> KnowledgeBase:
    return KnowledgeBase.objects.create(name=name, **fields)


@transaction.atomic
def knowledge_base_search_config_set(*, knowledge_base_id: int, search_config: str) -> bool:
    """Search this knowledge base with another text-search configuration (`search_config_for_language`): its
    chunks' search vectors are computed again in one UPDATE (no embedding), and the term statistics follow through
    their triggers. Returns whether anything changed (setting the configuration it has costs one query)."""
    changed = (
        KnowledgeBase.objects.filter(id=knowledge_base_id)
        .exclude(search_config=search_config)
        .update(search_config=search_config)
    )
    if changed:
        Chunk.objects.filter(knowledge_base_id=knowledge_base_id).update(search_config=search_config)
    return bool(changed)


def _knowledge_base_search_config(knowledge_base_id: int) -> str:
    """The configuration for chunks about to be inserted in this transaction. The share lock makes a concurrent
    change of configuration either come first (and be read here) or wait for these chunks (and update them)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_config FROM knowledge_knowledgebase WHERE id = %s FOR SHARE", [knowledge_base_id])
        return cursor.fetchone()[0]


def source_add_file(*, knowledge_base: KnowledgeBase, filename: str, data: bytes, title: str = "") -> Source:
    source = Source(knowledge_base=knowledge_base, kind=Source.Kind.FILE, title=title or filename)
    source.file.save(Path(filename).name, ContentFile(data), save=False)
    source.save()
    return source


def source_add_url(
    *, knowledge_base: KnowledgeBase, url: str, sitemap: bool = False, resync_every_hours: int | None = None, **fields
) -> Source:
    kind = Source.Kind.SITEMAP if sitemap else Source.Kind.URL
    return Source.objects.create(
        knowledge_base=knowledge_base, kind=kind, url=url, resync_every_hours=resync_every_hours, **fields
    )


def source_add_site(
    *,
    knowledge_base: KnowledgeBase,
    url: str,
    max_pages: int = 500,
    max_depth: int = 5,
    include_patterns: list[str] | None = None,
    exclude_patterns: list[str] | None = None,
    resync_every_hours: int | None = None,
    **fields,
) -> Source:
    """A website, crawled from `url` through its same-host links (knowledge/crawl.py)."""
    return Source.objects.create(
        knowledge_base=knowledge_base,
        kind=Source.Kind.SITE,
        url=url,
        max_pages=max_pages,
        max_depth=max_depth,
        include_patterns=list(include_patterns or []),
        exclude_patterns=list(exclude_patterns or []),
        resync_every_hours=resync_every_hours,
        **fields,
    )


def source_add_faq(*, knowledge_base: KnowledgeBase, question: str, answer: str) -> Source:
    return Source.objects.create(
        knowledge_base=knowledge_base, kind=Source.Kind.FAQ, title=question[:500], question=question, answer=answer
    )


def source_delete(*, source: Source) -> None:
    """Delete a source with its documents and their chunks, and its stored file."""
    if source.file:
        source.file.delete(save=False)
    source.delete()


# --- ingesting -----------------------------------------------------------------------------------------------


def source_ingest(*, source: Source, on_progress: Callable[[Source], None] | None = None) -> IngestReport:
    """Ingest (or re-sync) one source now. Failures of single documents are recorded on them; the rest goes on."""
    Source.objects.filter(id=source.id).update(status=Source.Status.RUNNING, error="")
    source.status, source.error = Source.Status.RUNNING, ""  # as progress reports show it
    try:
        if source.kind == Source.Kind.FILE:
            report = _ingest_file(source, on_progress)
        elif source.kind == Source.Kind.FAQ:
            report = _ingest_faq(source, on_progress)
        else:
            report = _ingest_web(source, on_progress)
    except (FetchError, OSError) as error:
        Source.objects.filter(id=source.id).update(status=Source.Status.FAILED, error=str(error))
        source.refresh_from_db()
        if on_progress is not None:
            on_progress(source)
        return IngestReport(failures=[(source.url or str(source), str(error))])
    all_failed = report.documents > 0 and len(report.failures) == report.documents
    Source.objects.filter(id=source.id).update(
        status=Source.Status.FAILED if all_failed else Source.Status.READY,
        error=report.failures[0][1] if all_failed else "",
        last_synced_at=timezone.now(),
    )
    source.refresh_from_db()
    if on_progress is not None:
        on_progress(source)  # the final status and "last synced", for a page that shows them live
    return report


def _progress(source: Source, *, total: int | None = None, done: int | None = None, on_progress=None) -> None:
    fields = {}
    if total is not None:
        source.documents_total = fields["documents_total"] = total
    if done is not None:
        source.documents_done = fields["documents_done"] = done
    Source.objects.filter(id=source.id).update(**fields)
    if on_progress is not None:
        on_progress(source)


def _ingest_file(source: Source, on_progress) -> IngestReport:
    _progress(source, total=1, done=0, on_progress=on_progress)
    with source.file.open("rb") as stored:
        data = stored.read()
    # The stored name may carry a suffix from the storage; the document is the source's one file.
    filename = Path(source.title).name if source.title else Path(source.file.name).name
    report = document_index(
        source=source,
        key="file",
        filename=filename,
        data=data,
        content_type=mimetypes.guess_type(filename)[0],
    )
    _progress(source, done=1, on_progress=on_progress)
    return report


def _ingest_faq(source: Source, on_progress) -> IngestReport:
    _progress(source, total=1, done=0, on_progress=on_progress)
    markdown = f"# {source.question.strip()}\n\n{source.answer.strip()}\n"
    report = document_index(
        source=source, key="faq", filename="faq.md", data=markdown.encode(), content_type="text/markdown"
    )
    _progress(source, done=1, on_progress=on_progress)
    return report


def _fetch_limits(source: Source) -> FetchLimits:
    return FetchLimits(
        max_pages=source.max_pages,
        same_host_only=source.same_host_only,
        allow_private=source.allow_private_addresses or settings.PARLEY_ALLOW_PRIVATE_URLS,
    )


def _ingest_web(source: Source, on_progress) -> IngestReport:
    if source.kind == Source.Kind.SITE:
        return _ingest_site(source, on_progress)
    report = IngestReport()
    with CrawlSession(start_url=source.url, limits=_fetch_limits(source)) as crawl:
        if source.kind == Source.Kind.URL:
            entries = [(source.url, None)]
        else:
            entries = [(entry.url, entry.lastmod) for entry in crawl.read_sitemap(source.url)]
        _progress(source, total=len(entries), done=0, on_progress=on_progress)
        existing = {document.key: document for document in source.documents.all()}
        for done, (url, lastmod) in enumerate(entries, start=1):
            lastmod_text = lastmod.isoformat() if lastmod else ""
            known = existing.get(url)
            if known is not None and lastmod_text and known.sitemap_lastmod == lastmod_text and known.content_hash:
                report.documents += 1
                report.unchanged += 1
            else:
                report.add(_index_page(crawl, source, url=url, known=known, lastmod=lastmod_text))
            _progress(source, done=done, on_progress=on_progress)
    # Pages a sitemap no longer lists are gone from the site: take them out of the knowledge base.
    if source.kind == Source.Kind.SITEMAP:
        listed = {url for url, _ in entries}
        gone = [document.id for key, document in existing.items() if key not in listed]
        if gone:
            report.removed = Document.objects.filter(id__in=gone).delete()[1].get("knowledge.Document", 0)
    return report


def _ingest_site(source: Source, on_progress) -> IngestReport:
    """Crawl the site breadth-first; pages no longer reachable from the start page leave the knowledge base."""
    report = IngestReport()
    existing = {document.key: document for document in source.documents.all()}

    def known(url: str) -> KnownPage | None:
        document = existing.get(url)
        if document is None or not document.content_hash:
            return None  # never indexed (or failed): fetch it whole
        return KnownPage(etag=document.etag, last_modified=document.last_modified, links=tuple(document.links))

    scope = CrawlScope(
        max_depth=source.max_depth,
        include=tuple(source.include_patterns or ()),
        exclude=tuple(source.exclude_patterns or ()),
    )
    reached: set[str] = set()
    with CrawlSession(start_url=source.url, limits=_fetch_limits(source)) as crawl:
        crawler = SiteCrawler(crawl=crawl, start_url=source.url, scope=scope, max_pages=source.max_pages, known=known)
        _progress(source, total=1, done=0, on_progress=on_progress)
        for done, page in enumerate(crawler.pages(), start=1):
            if done == 1 and isinstance(page.result, FetchError):
                raise page.result  # the start page itself: the whole source failed, and nothing is removed
            if page.index:
                reached.add(page.url)
                report.add(_site_page_index(source, page, known=existing.get(page.url)))
            _progress(source, total=max(crawler.discovered, done), done=done, on_progress=on_progress)
    gone = [document.id for key, document in existing.items() if key not in reached]
    if gone:
        report.removed = Document.objects.filter(id__in=gone).delete()[1].get("knowledge.Document", 0)
    return report


def _site_page_index(source: Source, page, *, known: Document | None) -> IngestReport:
    if isinstance(page.result, FetchError):
        _document_failed(source=source, key=page.url, url=page.url, error=str(page.result))
        return IngestReport(documents=1, failures=[(page.url, str(page.result))])
    links = list(page.links)
    if isinstance(page.result, NotModified):
        Document.objects.filter(id=known.id).update(links=links)
        return IngestReport(documents=1, unchanged=1, chunks=known.chunk_count)
    fetched = page.result
    report = document_index(
        source=source,
        key=page.url,
        url=fetched.url,
        filename=fetched.url.rstrip("/").rsplit("/", 1)[-1] or fetched.url,
        data=fetched.content,
        content_type=fetched.content_type,
        etag=fetched.etag or "",
        last_modified=fetched.last_modified or "",
    )
    Document.objects.filter(source=source, key=page.url).update(links=links)
    return report


def _index_page(crawl: CrawlSession, source: Source, *, url: str, known: Document | None, lastmod: str):
    try:
        page = crawl.fetch_page(
            url, etag=known.etag if known else None, last_modified=known.last_modified if known else None
        )
    except FetchError as error:
        _document_failed(source=source, key=url, url=url, error=str(error))
        return IngestReport(documents=1, failures=[(url, str(error))])
    if isinstance(page, NotModified):
        Document.objects.filter(id=known.id).update(sitemap_lastmod=lastmod)
        return IngestReport(documents=1, unchanged=1)
    assert isinstance(page, FetchedPage)
    return document_index(
        source=source,
        key=url,
        url=page.url,
        filename=page.url.rsplit("/", 1)[-1] or page.url,
        data=page.content,
        content_type=page.content_type,
        etag=page.etag or "",
        last_modified=page.last_modified or "",
        sitemap_lastmod=lastmod,
    )


def _document_failed(*, source: Source, key: str, error: str, url: str = "", filename: str = "") -> None:
    Document.objects.update_or_create(
        source=source,
        key=key,
        defaults={
            "knowledge_base_id": source.knowledge_base_id,
            "url": url,
            "filename": filename,
            "title": filename or url,
            "status": Document.Status.FAILED,
            "error": error,
        },
    )


def document_index(
    *,
    source: Source,
    key: str,
    data: bytes,
    filename: str,
    content_type: str | None = None,
    url: str = "",
    etag: str = "",
    last_modified: str = "",
    sitemap_lastmod: str = "",
) -> IngestReport:
    """Parse, chunk, embed and store one document of a source, replacing its previous chunks atomically."""
    content_hash = hashlib.sha256(data).hexdigest()
    known = Document.objects.filter(source=source, key=key).first()
    caching = {"etag": etag, "last_modified": last_modified, "sitemap_lastmod": sitemap_lastmod}
    if known is not None and known.content_hash == content_hash and known.status == Document.Status.INDEXED:
        Document.objects.filter(id=known.id).update(**caching)
        return IngestReport(documents=1, unchanged=1, chunks=known.chunk_count)
    try:
        parsed = parse_document(data=data, filename=filename, content_type=content_type)
    except DocumentParseError as error:
        _document_failed(source=source, key=key, url=url, filename=filename, error=str(error))
        return IngestReport(documents=1, failures=[(filename or url, str(error))])

    knowledge_base = source.knowledge_base
    embedder = get_embedder(settings.EMBEDDING_URL or None)
    drafts = chunk_document(
        parsed,
        tokenizer=embedder,
        chunk_tokens=knowledge_base.chunk_tokens,
        overlap_tokens=knowledge_base.overlap_tokens,
    )
    # Chunks whose embedded text did not change keep their vectors and token signatures: only the changed parts
    # cost model time. A chunk embedded before token signatures existed is embedded again to get one.
    reusable = {}
    if known is not None:
        reusable = {
            text_hash: (vector, bytes(signature) if signature is not None else None)
            for text_hash, vector, signature in Chunk.objects.filter(document=known).values_list(
                "text_hash", "embedding", "token_signature"
            )
            if signature is not None or not embedder.token_signatures
        }
    hashes = [hashlib.sha256(draft.embedding_text.encode()).hexdigest() for draft in drafts]
    to_embed = [
        draft.embedding_text for draft, text_hash in zip(drafts, hashes, strict=True) if text_hash not in reusable
    ]
    fresh = iter(zip(*embedder.embed_documents_with_signatures(to_embed), strict=True))
    embedded = [reusable[text_hash] if text_hash in reusable else next(fresh) for text_hash in hashes]

    with transaction.atomic():
        document, _ = Document.objects.update_or_create(
            source=source,
            key=key,
            defaults={
                "knowledge_base_id": source.knowledge_base_id,
                "title": parsed.title[:500] or filename,
                "url": url,
                "filename": filename[:500],
                "content_hash": content_hash,
                "status": Document.Status.INDEXED,
                "error": "",
                "chunk_count": len(drafts),
                **caching,
            },
        )
        search_config = _knowledge_base_search_config(source.knowledge_base_id)
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document=document,
                    knowledge_base_id=source.knowledge_base_id,
                    position=draft.position,
                    text=draft.text,
                    heading_path=list(draft.heading_path),
                    heading_text=HEADING_SEPARATOR.join([document.title, *draft.heading_path]),
                    token_count=draft.token_count,
                    text_hash=text_hash,
                    embedding=vector,
                    token_signature=signature,
                    search_config=search_config,
                )
                for draft, text_hash, (vector, signature) in zip(drafts, hashes, embedded, strict=True)
            ],
            batch_size=500,
        )
    return IngestReport(documents=1, indexed=1, chunks=len(drafts), chunks_embedded=len(to_embed))


def sources_due_for_resync(*, now=None) -> list[Source]:
    now = now or timezone.now()
    due = []
    for source in Source.objects.filter(
        kind__in=[Source.Kind.URL, Source.Kind.SITEMAP, Source.Kind.SITE], resync_every_hours__isnull=False
    ).exclude(status=Source.Status.RUNNING):
        if source.last_synced_at is None or source.last_synced_at + timedelta(hours=source.resync_every_hours) <= now:
            due.append(source)
    return due
