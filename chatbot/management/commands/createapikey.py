"""`manage.py createapikey NAME [--bot SLUG]… [--read-only] [--created-by USERNAME]`: a REST API key, printed alone
on the last line, once."""

from django.contrib.auth import get_user_model
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
        parser.add_argument(
            "--created-by",
            metavar="USERNAME",
            help="The staff member the key belongs to: staff replies are written as them, and view=mine is theirs.",
        )

    def handle(self, *args, name, bot, read_only, created_by, **options):
        bots = list(Bot.objects.filter(slug__in=bot))
        missing = sorted(set(bot) - {b.slug for b in bots})
        if missing:
            raise CommandError(f"No bot with the slug {', '.join(missing)}.")
        user = None
        if created_by:
            user = get_user_model().objects.filter(username=created_by, is_active=True).first()
            if user is None:
                raise CommandError(f"No active user {created_by!r}.")
        api_key, key = api_key_create(name=name, bots=bots, read_only=read_only, user=user)
        scope = ", ".join(sorted(b.slug for b in bots)) if bots else "every bot"
        mode = "read-only" if read_only else "read and write"
        self.stdout.write(f"API key “{api_key.name}” (pk_{api_key.prefix}…): {mode}, {scope}. Shown once:")
        self.stdout.write(key)
