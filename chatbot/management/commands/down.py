from django.conf import settings
from django.core.management.base import BaseCommand

from chatbot.ops.embedded import stop_embedded_servers


class Command(BaseCommand):
    help = "Stop the embedded PostgreSQL and Redis servers of this data directory."

    def handle(self, *args, **options):
        stopped = stop_embedded_servers(data_dir=settings.PARLEY_DATA_DIR)
        if stopped:
            self.stdout.write(f"stopped embedded {', '.join(stopped)} in {settings.PARLEY_DATA_DIR}")
        else:
            self.stdout.write(f"no embedded server running in {settings.PARLEY_DATA_DIR}")
