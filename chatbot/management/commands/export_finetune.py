import sys

from django.core.management.base import BaseCommand, CommandError

from chatbot.answers.finetune import finetune_export
from chatbot.models import Bot


class Command(BaseCommand):
    help = (
        "Export a bot's approved answers and staff-written or staff-corrected replies as a chat-format JSONL dataset "
        "for fine-tuning a LoRA adapter (docs/brand-voice.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("--out", help="Write to this file instead of stdout.")
        parser.add_argument(
            "--no-retrieve",
            action="store_true",
            help="Do not retrieve passages for examples without a recorded prompt (system prompt without passages).",
        )

    def handle(self, *args, bot: str, out: str | None, no_retrieve: bool, **options):
        found = Bot.objects.filter(slug=bot).first()
        if found is None:
            raise CommandError(f"no bot with the slug {bot!r}")
        if out:
            with open(out, "w", encoding="utf-8") as file:
                count = finetune_export(bot=found, out=file, retrieve=not no_retrieve)
        else:
            count = finetune_export(bot=found, out=sys.stdout, retrieve=not no_retrieve)
        self.stderr.write(f"{count} example(s) exported for {found.slug}")
