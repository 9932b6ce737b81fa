from django.core.management.base import BaseCommand, CommandError
from django.utils.text import slugify

from chatbot.bots.services import BotExists, bot_create
from chatbot.chat.widget import embed_snippet


class Command(BaseCommand):
    help = "Create a bot with a knowledge base of its own; prints its public id and the embed snippet."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", help="Display name (default: the slug, capitalised).")

    def handle(self, *args, slug: str, name: str | None, **options):
        if slugify(slug) != slug:
            raise CommandError(f"'{slug}' is not a valid slug: use lowercase letters, digits and hyphens")
        try:
            bot = bot_create(slug=slug, name=name or slug.replace("-", " ").title())
        except BotExists as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Created bot '{bot.slug}' ({bot.name})")
        self.stdout.write(f"Public id: {bot.public_id}")
        self.stdout.write("Embed it on a site with:")
        self.stdout.write(f"  {embed_snippet(bot)}")
