"""A bot's knowledge sources: adding them (then ingested by a worker once committed), re-syncing them, and adding
files, .zip archives and folders from the command line (`manage.py ingest`)."""

from dataclasses import dataclass, field
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction

from chatbot.models import Bot
from knowledge import services as knowledge
from knowledge.archives import ArchiveError, archive_documents, is_zip
from knowledge.models import KnowledgeBase, Source
from knowledge.tasks import source_ingest_after_commit

# What `manage.py ingest` picks up in a folder.
SUPPORTED_SUFFIXES = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text", ".csv", ".rst"}


def source_add_and_ingest(*, bot: Bot, kind: str, **fields) -> Source:
    """Add a source to the bot's knowledge base and queue its ingestion once committed."""
    base = bot.knowledge_base
    if kind == Source.Kind.FAQ:
        source = knowledge.source_add_faq(knowledge_base=base, question=fields["question"], answer=fields["answer"])
    elif kind == Source.Kind.FILE:
        source = knowledge.source_add_file(knowledge_base=base, filename=fields["filename"], data=fields["data"])
    elif kind == Source.Kind.SITE:
        source = knowledge.source_add_site(
            knowledge_base=base,
            url=fields["url"],
            **{name: value for name, value in fields.items() if name in SITE_FIELDS and value is not None},
        )
    else:
        source = knowledge.source_add_url(
            knowledge_base=base,
            url=fields["url"],
            sitemap=kind == Source.Kind.SITEMAP,
            resync_every_hours=fields.get("resync_every_hours"),
            **{
                name: fields[name]
                for name in ("title", "same_host_only", "max_pages", "allow_private_addresses")
                if fields.get(name) is not None
            },
        )
    source_ingest_after_commit(source)
    return source


SITE_FIELDS = (
    "title", "max_pages", "max_depth", "include_patterns", "exclude_patterns", "resync_every_hours",
    "allow_private_addresses",
)  # fmt: skip


@dataclass
class UploadReport:
    added: list[Source] = field(default_factory=list)
    updated: list[Source] = field(default_factory=list)
    # One sentence per file or archive member left out, saying why.
    refused: list[str] = field(default_factory=list)


@dataclass
class Unpacked:
    documents: list[tuple[str, str, bytes]] = field(default_factory=list)  # (title, file name, data)
    refused: list[str] = field(default_factory=list)  # one sentence per archive (member) left out, saying why


def upload_unpack(*, filename: str, data: bytes, title: str = "") -> Unpacked:
    """A file's documents: the file itself, or the documents inside a .zip archive (with the limits and bomb guards
    of knowledge/archives.py), titled "<title> › <path in the archive>". `title` defaults to the file's name."""
    name = Path(filename).name
    title = title or name
    if not is_zip(filename=name, data=data):
        return Unpacked(documents=[(title, name, data)])
    try:
        contents = archive_documents(data=data, filename=name)
    except ArchiveError as error:
        return Unpacked(refused=[str(error)])
    unpacked = Unpacked(
        documents=[(f"{title} › {m.path}", Path(m.path).name, m.data) for m in contents.documents],
        refused=[f"“{name} › {path}” was left out: {why}." for path, why in contents.refused],
    )
    if not contents.documents and not contents.refused:
        unpacked.refused.append(f"“{name}” holds no document.")
    return unpacked


@transaction.atomic
def sources_add_uploads(*, bot: Bot, uploads: list[tuple[str, bytes]]) -> UploadReport:
    """Add uploaded files, unpacking .zip archives, and queue their ingestion once committed. A file whose title
    the knowledge base already has (the same name, or the same path in an archive of the same name) is replaced,
    and re-ingested change-aware, instead of added twice."""
    report = UploadReport()
    documents: list[tuple[str, str, bytes]] = []
    for filename, data in uploads:
        unpacked = upload_unpack(filename=filename, data=data)
        documents += unpacked.documents
        report.refused += unpacked.refused
    base = bot.knowledge_base
    for title, filename, data in documents:
        existing = Source.objects.filter(knowledge_base=base, kind=Source.Kind.FILE, title=title).first()
        if existing is None:
            source = knowledge.source_add_file(knowledge_base=base, filename=filename, data=data, title=title)
            report.added.append(source)
        else:
            _file_replace(source=existing, filename=filename, data=data)
            Source.objects.filter(id=existing.id).update(status=Source.Status.PENDING, documents_done=0)
            source = existing
            report.updated.append(source)
        source_ingest_after_commit(source)
    return report


def _file_replace(*, source: Source, filename: str, data: bytes) -> None:
    source.file.delete(save=False)
    source.file.save(filename, ContentFile(data), save=True)


def source_resync(*, source: Source) -> None:
    Source.objects.filter(id=source.id).update(status=Source.Status.PENDING, documents_done=0)
    source_ingest_after_commit(source)


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def files_under(path: Path) -> list[Path]:
    """The file itself, or every supported file below the folder (recursively)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def source_for_url(*, knowledge_base: KnowledgeBase, url: str, sitemap: bool, resync_hours: int | None) -> Source:
    """The knowledge base's source for this page or sitemap, or a new one."""
    kind = Source.Kind.SITEMAP if sitemap else Source.Kind.URL
    existing = Source.objects.filter(knowledge_base=knowledge_base, kind=kind, url=url).first()
    return existing or knowledge.source_add_url(
        knowledge_base=knowledge_base, url=url, sitemap=sitemap, resync_every_hours=resync_hours
    )


def source_for_site(*, knowledge_base: KnowledgeBase, url: str, resync_hours: int | None, **limits) -> Source:
    """The knowledge base's website source starting at `url` (its limits updated), or a new one."""
    existing = Source.objects.filter(knowledge_base=knowledge_base, kind=Source.Kind.SITE, url=url).first()
    limits = {name: value for name, value in limits.items() if value is not None}
    if existing is None:
        return knowledge.source_add_site(
            knowledge_base=knowledge_base, url=url, resync_every_hours=resync_hours, **limits
        )
    if limits:
        Source.objects.filter(id=existing.id).update(**limits)
        existing.refresh_from_db()
    return existing


def sources_for_path(*, knowledge_base: KnowledgeBase, file_path: Path) -> tuple[list[Source], list[str]]:
    """The file's source, titled with its full path (ingesting the same path again updates it in place,
    change-aware), or a new one; a .zip archive gives a source per document inside it (titled "<the archive's path>
    › <path in the archive>"), as uploads do. Returns (sources, one sentence per archive (member) left out)."""
    unpacked = upload_unpack(filename=file_path.name, data=file_path.read_bytes(), title=str(file_path.resolve()))
    sources = _sources_for_documents(knowledge_base=knowledge_base, documents=unpacked.documents)
    return sources, unpacked.refused


def _sources_for_documents(*, knowledge_base: KnowledgeBase, documents: list[tuple[str, str, bytes]]) -> list[Source]:
    sources = []
    for title, filename, data in documents:
        existing = Source.objects.filter(knowledge_base=knowledge_base, kind=Source.Kind.FILE, title=title).first()
        if existing is None:
            sources.append(
                knowledge.source_add_file(knowledge_base=knowledge_base, filename=filename, data=data, title=title)
            )
        else:
            _file_replace(source=existing, filename=filename, data=data)
            sources.append(existing)
    return sources
