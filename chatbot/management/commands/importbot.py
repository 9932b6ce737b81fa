import json
import sys

from django.core.management.base import BaseCommand, CommandError

from chatbot.bots.botfiles import BotConfigError, ImportPlan, bot_config_import, bot_config_plan


class Command(BaseCommand):
    help = (
        "Create or update a bot from a configuration file written by exportbot (docs/bot-config.md); '-' reads "
        "stdin. Web and FAQ sources are queued for ingestion (run a worker, or `manage.py up`)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--slug", help="Import under this slug instead of the file's.")
        parser.add_argument("--dry-run", action="store_true", help="Only show what would change.")

    def handle(self, *args, file: str, slug: str | None, dry_run: bool = False, **options):
        try:
            if file == "-":
                document = json.load(sys.stdin)
            else:
                with open(file, encoding="utf-8") as source:
                    document = json.load(source)
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error.strerror}") from None
        except ValueError as error:
            raise CommandError(f"{file} is not JSON: {error}") from None
        plan = bot_config_plan(document=document, slug=slug)
        if plan.problems:
            raise CommandError("the configuration is not valid:\n  " + "\n  ".join(plan.problems))
        self._show(plan)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
            return
        try:
            report = bot_config_import(document=document, slug=slug)
        except BotConfigError as error:
            raise CommandError("the configuration is not valid:\n  " + "\n  ".join(error.problems)) from None
        verb = "Created" if report.created else "Updated"
        self.stdout.write(
            f"{verb} bot '{report.bot.slug}' ({report.bot.name}): {report.approved_answers_added} approved "
            f"answer(s) and {report.sources_added} source(s) added."
        )
        for name in report.sources_skipped:
            self.stdout.write(f"  Upload again (files are not in the configuration): {name}")

    def _show(self, plan: ImportPlan) -> None:
        """What the import changes, as the dashboard's preview shows it."""
        self.stdout.write(f"{'New bot' if plan.created else 'Changes to bot'} '{plan.slug}':")
        for name, now, after in plan.changes:
            self.stdout.write(f"  {name}: {after!r}" if plan.created else f"  {name}: {now!r} -> {after!r}")
