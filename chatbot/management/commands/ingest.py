from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chatbot.bots.sources import files_under, is_url, source_for_file, source_for_url
from chatbot.models import Bot
from knowledge.models import Source
from knowledge.services import IngestReport, source_ingest


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
            if is_url(target):
                as_sitemap = sitemap or target.lower().endswith(".xml")
                sources.append(
                    source_for_url(
                        knowledge_base=knowledge_base, url=target, sitemap=as_sitemap, resync_hours=resync_hours
                    )
                )
                continue
            path = Path(target).expanduser()
            if not path.exists():
                raise CommandError(f"{target}: no such file or folder")
            sources += [source_for_file(knowledge_base=knowledge_base, file_path=file) for file in files_under(path)]

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
