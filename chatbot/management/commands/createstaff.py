import getpass
import os
import secrets

from django.core.management.base import BaseCommand, CommandError

from chatbot.dashboard.services import staff_member_save
from chatbot.models import Bot


class Command(BaseCommand):
    help = (
        "Create or update a dashboard user: `createstaff alice --role agent --bot acme --bot shop`. The password "
        "comes from --password, the PARLEY_STAFF_PASSWORD environment variable, a prompt, or is generated."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=["admin", "agent"], default="agent")
        parser.add_argument("--bot", action="append", default=[], help="A bot (slug) the agent works; repeatable.")
        parser.add_argument("--display-name", default="", help="The name visitors see.")
        parser.add_argument("--email", default="")
        parser.add_argument("--can-view-leads", action="store_true")
        parser.add_argument("--password")

    def handle(self, *args, username, role, bot, display_name, email, can_view_leads, password, **options):
        bots = list(Bot.objects.filter(slug__in=bot))
        missing = sorted(set(bot) - {b.slug for b in bots})
        if missing:
            raise CommandError(f"no bot with the slug(s): {', '.join(missing)}")
        password = password or os.environ.get("PARLEY_STAFF_PASSWORD")
        generated = False
        if not password and options.get("interactive", True) and os.isatty(0):
            password = getpass.getpass("Password (empty: generate one): ")
        if not password:
            password, generated = secrets.token_urlsafe(12), True
        member = staff_member_save(
            username=username,
            role=role,
            bots=bots,
            display_name=display_name,
            can_view_leads=can_view_leads,
            password=password,
            email=email,
        )
        scope = "every bot" if role == "admin" else (", ".join(b.slug for b in bots) or "no bot yet")
        self.stdout.write(f"Staff member '{member.user.username}' ({member.get_role_display()}, {scope}).")
        if generated:
            self.stdout.write(f"Password: {password}")
        self.stdout.write("Log in at /dashboard/login/")
