import json

from django.core.management.base import BaseCommand, CommandError

from chatbot.bots.botfiles import bot_config_export
from chatbot.models import Bot


class Command(BaseCommand):
    help = "Write a bot's whole configuration (docs/bot-config.md) as JSON, to stdout or --output FILE."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")

    def handle(self, *args, slug: str, output: str | None, **options):
        bot = Bot.objects.filter(slug=slug).first()
        if bot is None:
            raise CommandError(f"no bot with the slug '{slug}'")
        text = json.dumps(bot_config_export(bot=bot), indent=2, ensure_ascii=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as out:
                out.write(text)
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
