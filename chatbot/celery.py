"""The Celery app: answers, ingestion and scheduled jobs run in workers started by `manage.py up`."""

import os

from celery import Celery

from chatbot.ops.quiet_logs import routine_task_logs_quiet

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each domain keeps its tasks in its own `tasks` module (registered under their historical names: see each module).
app.autodiscover_tasks(
    ["chatbot.answers", "chatbot.leads", "chatbot.privacy", "chatbot.chat", "chatbot.webhooks", "chatbot.insights",
     "knowledge"]
)  # fmt: skip
# Beat's sweep every 5 s would log three lines each time: it logs only when it finds something.
routine_task_logs_quiet()
