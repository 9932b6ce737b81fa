"""`manage.py createapikey NAME [--bot SLUG]… [--read-only]`: a REST API key, printed alone on the last line, once."""

from django.core.management.base import BaseCommand, CommandError

from chatbot.apikeys.services import api_key_create
from chatbot.models import Bot


class Command(BaseCommand):
    help = "Create a REST API key (docs/api.md). It is printed once, alone on the last line: store it now."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'CRM sync'.")
        parser.add_argument(
            "--bot", action="append", default=[], metavar="SLUG", help="Limit the key to this bot (repeatable)."
        )
        parser.add_argument("--read-only", action="store_true", help="The key may read, never change anything.")

    def handle(self, *args, name, bot, read_only, **options):
        bots = list(Bot.objects.filter(slug__in=bot))
        missing = sorted(set(bot) - {b.slug for b in bots})
        if missing:
            raise CommandError(f"No bot with the slug {', '.join(missing)}.")
        api_key, key = api_key_create(name=name, bots=bots, read_only=read_only)
        scope = ", ".join(sorted(b.slug for b in bots)) if bots else "every bot"
        mode = "read-only" if read_only else "read and write"
        self.stdout.write(f"API key “{api_key.name}” (pk_{api_key.prefix}…): {mode}, {scope}. Shown once:")
        self.stdout.write(key)
