from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from chatbot.bots.sources import files_under, is_url, source_for_site, source_for_url, sources_for_path
from chatbot.models import Bot
from knowledge.models import Source
from knowledge.services import IngestReport, source_ingest


class Command(BaseCommand):
    help = (
        "Ingest files, .zip archives (each document inside), folders (recursively), web pages, sitemaps and whole "
        "websites (--crawl) into a bot's knowledge base, now."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("targets", nargs="*", metavar="PATH_OR_URL")
        parser.add_argument("--sitemap", action="store_true", help="Treat URLs as sitemaps (automatic for *.xml).")
        parser.add_argument("--resync-hours", type=int, help="Re-sync web sources on this schedule.")
        parser.add_argument(
            "--crawl", action="append", default=[], metavar="URL",
            help="Crawl a website from this start page, following its same-host links (repeatable).",
        )  # fmt: skip
        parser.add_argument("--max-pages", type=int, help="--crawl: at most this many pages (default 500).")
        parser.add_argument("--max-depth", type=int, help="--crawl: at most this many links away (default 5).")
        parser.add_argument(
            "--include", action="append", metavar="PATTERN", help="--crawl: only these paths (/docs/*)."
        )
        parser.add_argument("--exclude", action="append", metavar="PATTERN", help="--crawl: never these paths.")
        parser.add_argument(
            "--allow-private-addresses", action="store_true", help="--crawl: the site is on a private network."
        )

    def handle(
        self, *args, bot: str, targets: list[str], sitemap: bool, resync_hours: int | None, crawl: list[str], **options
    ):
        if not targets and not crawl:
            raise CommandError("give files, folders or URLs to ingest, or --crawl URL")
        for number in ("max_pages", "max_depth"):
            if options[number] is not None and options[number] < (1 if number == "max_pages" else 0):
                raise CommandError(f"--{number.replace('_', '-')} must be at least {1 if number == 'max_pages' else 0}")
        found = Bot.objects.filter(slug=bot).select_related("knowledge_base").first()
        if found is None:
            raise CommandError(f"no bot with the slug '{bot}' (create one with: manage.py createbot {bot})")
        if found.knowledge_base is None:
            raise CommandError(f"bot '{bot}' has no knowledge base")
        knowledge_base = found.knowledge_base

        sources: list[Source] = []
        refused: list[str] = []  # archives and archive members left out, one sentence each
        for url in crawl:
            if not is_url(url):
                raise CommandError(f"--crawl {url}: give an http(s) address")
            sources.append(
                source_for_site(
                    knowledge_base=knowledge_base,
                    url=url,
                    resync_hours=resync_hours,
                    max_pages=options["max_pages"],
                    max_depth=options["max_depth"],
                    include_patterns=options["include"],
                    exclude_patterns=options["exclude"],
                    allow_private_addresses=options["allow_private_addresses"] or None,
                )
            )
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
            for file in files_under(path):
                found_sources, left_out = sources_for_path(knowledge_base=knowledge_base, file_path=file)
                sources += found_sources
                refused += left_out
        for problem in refused:
            self.stdout.write(f"left out: {problem}")
        if refused and not sources:
            raise CommandError("nothing left to ingest")

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
