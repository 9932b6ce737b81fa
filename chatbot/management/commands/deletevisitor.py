from django.core.management.base import BaseCommand, CommandError

from chatbot.models import Bot
from chatbot.privacy.services import visitor_data_delete


class Command(BaseCommand):
    help = "Delete a visitor's data with one bot (leads, conversations, messages): a privacy request, in one action."

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("--email", help="The email address the visitor left.")
        parser.add_argument("--visitor-id", help="The visitor id (shown with the lead and the conversation).")

    def handle(self, *args, bot: str, email: str | None, visitor_id: str | None, **options):
        if not email and not visitor_id:
            raise CommandError("give --email or --visitor-id")
        found = Bot.objects.filter(slug=bot).first()
        if found is None:
            raise CommandError(f"no bot with the slug {bot!r}")
        deleted = visitor_data_delete(bot=found, email=email, visitor_id=visitor_id)
        self.stdout.write(
            f"Deleted {deleted.leads} lead(s), {deleted.conversations} conversation(s) and {deleted.messages} "
            f"message(s) of {email or visitor_id} with {found.slug}."
        )
