"""The Celery app: answers, ingestion and scheduled jobs run in workers started by `manage.py up`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each domain keeps its tasks in its own `tasks` module (registered under their historical names: see each module).
app.autodiscover_tasks(["chatbot.answers", "chatbot.leads", "chatbot.privacy", "chatbot.insights", "knowledge"])
