from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chatbot.models import Bot
from knowledge.models import Source
from knowledge.services import IngestReport, source_add_url, source_ingest

SUPPORTED_SUFFIXES = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text", ".csv", ".rst"}


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


class Command(BaseCommand):
    help = "Ingest files, folders (recursively), web pages and sitemaps into a bot's knowledge base, now."

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("targets", nargs="+", metavar="PATH_OR_URL")
        parser.add_argument("--sitemap", action="store_true", help="Treat URLs as sitemaps (automatic for *.xml).")
        parser.add_argument("--resync-hours", type=int, help="Re-sync web sources on this schedule.")

    def handle(self, *args, bot: str, targets: list[str], sitemap: bool, resync_hours: int | None, **options):
        found = Bot.objects.filter(slug=bot).select_related("knowledge_base").first()
        if found is None:
            raise CommandError(f"no bot with the slug '{bot}' (create one with: manage.py createbot {bot})")
        if found.knowledge_base is None:
            raise CommandError(f"bot '{bot}' has no knowledge base")
        knowledge_base = found.knowledge_base

        sources: list[Source] = []
        for target in targets:
            if _is_url(target):
                as_sitemap = sitemap or target.lower().endswith(".xml")
                kind = Source.Kind.SITEMAP if as_sitemap else Source.Kind.URL
                source = Source.objects.filter(knowledge_base=knowledge_base, kind=kind, url=target).first()
                sources.append(
                    source
                    or source_add_url(
                        knowledge_base=knowledge_base, url=target, sitemap=as_sitemap, resync_every_hours=resync_hours
                    )
                )
                continue
            path = Path(target).expanduser()
            if not path.exists():
                raise CommandError(f"{target}: no such file or folder")
            for file_path in _files_under(path):
                sources.append(_file_source(knowledge_base, file_path))

        total = IngestReport()
        with tqdm(total=len(sources), unit="source", disable=None, file=self.stderr._out) as bar:
            for source in sources:
                bar.set_description(str(source)[:40])
                total.add(source_ingest(source=source))
                bar.update(1)

        self.stdout.write(
            f"documents: {total.documents} (indexed {total.indexed}, unchanged {total.unchanged}, "
            f"removed {total.removed}, failed {len(total.failures)}); "
            f"chunks: {total.chunks} ({total.chunks_embedded} embedded)"
        )
        for name, error in total.failures:
            self.stdout.write(f"failed: {name}: {error}")


def _file_source(knowledge_base, file_path: Path) -> Source:
    """The file's source (re-ingesting the same path updates it in place, change-aware), or a new one."""
    from django.core.files.base import ContentFile

    from knowledge.services import source_add_file

    title = str(file_path.resolve())
    data = file_path.read_bytes()
    existing = Source.objects.filter(knowledge_base=knowledge_base, kind=Source.Kind.FILE, title=title).first()
    if existing is None:
        return source_add_file(knowledge_base=knowledge_base, filename=file_path.name, data=data, title=title)
    existing.file.delete(save=False)
    existing.file.save(file_path.name, ContentFile(data), save=True)
    return existing
