import sys
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from chatbot.leads.export import leads_csv_write, leads_filter
from chatbot.models import Bot


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = "Export a bot's leads as CSV (to stdout, or --out FILE)."

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("--since", type=_day, help="First day (YYYY-MM-DD), inclusive.")
        parser.add_argument("--until", type=_day, help="Last day (YYYY-MM-DD), inclusive.")
        parser.add_argument("--consent", choices=["yes", "no"], help="Only leads that gave (or did not give) consent.")
        parser.add_argument("--out", help="Write to this file instead of stdout.")

    def handle(self, *args, bot: str, since, until, consent, out: str | None, **options):
        found = Bot.objects.filter(slug=bot).first()
        if found is None:
            raise CommandError(f"no bot with the slug {bot!r}")
        selected = leads_filter(bot=found, since=since, until=until, consent={"yes": True, "no": False}.get(consent))
        if out:
            with open(out, "w", newline="", encoding="utf-8") as file:
                count = leads_csv_write(bot=found, leads=selected, out=file)
            self.stderr.write(f"{count} lead(s) written to {out}")
        else:
            leads_csv_write(bot=found, leads=selected, out=sys.stdout)
