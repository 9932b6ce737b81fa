import json
import sys

from django.core.management.base import BaseCommand, CommandError

from chatbot.models import Bot
from chatbot.privacy.export import visitor_data_export


class Command(BaseCommand):
    help = (
        "Export a visitor's data with one bot (conversations, messages, leads) as JSON: the answer to an access "
        "request. Finds the visitor as deletevisitor does."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("--email", help="The email address the visitor left.")
        parser.add_argument("--visitor-id", help="The visitor id (shown on the transcript and the lead).")
        parser.add_argument("--out", help="Write to this file instead of stdout.")

    def handle(self, *args, bot: str, email: str | None, visitor_id: str | None, out: str | None, **options):
        if not email and not visitor_id:
            raise CommandError("give --email or --visitor-id")
        found = Bot.objects.filter(slug=bot).first()
        if found is None:
            raise CommandError(f"no bot with the slug {bot!r}")
        document = visitor_data_export(bot=found, email=email, visitor_id=visitor_id)
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        if out:
            with open(out, "w", encoding="utf-8") as file:
                file.write(text)
        else:
            sys.stdout.write(text)
        self.stderr.write(
            f"{len(document['conversations'])} conversation(s) and {len(document['leads'])} lead(s) of "
            f"{email or visitor_id} exported for {found.slug}"
        )
