"""A bot's knowledge sources: adding them (then ingested by a worker once committed), re-syncing them, and adding
files and folders from the command line (`manage.py ingest`)."""

from pathlib import Path

from django.core.files.base import ContentFile

from chatbot.models import Bot
from knowledge import services as knowledge
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
    else:
        source = knowledge.source_add_url(
            knowledge_base=base,
            url=fields["url"],
            sitemap=kind == Source.Kind.SITEMAP,
            resync_every_hours=fields.get("resync_every_hours"),
            **{name: fields[name] for name in ("title", "same_host_only", "max_pages") if fields.get(name) is not None},
        )
    source_ingest_after_commit(source)
    return source


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


def source_for_file(*, knowledge_base: KnowledgeBase, file_path: Path) -> Source:
    """The file's source (re-ingesting the same path updates it in place, change-aware), or a new one."""
    title = str(file_path.resolve())
    data = file_path.read_bytes()
    existing = Source.objects.filter(knowledge_base=knowledge_base, kind=Source.Kind.FILE, title=title).first()
    if existing is None:
        return knowledge.source_add_file(knowledge_base=knowledge_base, filename=file_path.name, data=data, title=title)
    existing.file.delete(save=False)
    existing.file.save(file_path.name, ContentFile(data), save=True)
    return existing
