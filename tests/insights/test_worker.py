"""The on-demand analysis end to end: "Analyse now" on the analytics page queues a run, a real Celery worker process
runs it against the TGI simulator over HTTP, and the page then shows the model's topics and sentiment."""

import pytest
from django.test import Client
from django.urls import reverse

from chatbot.dashboard.services import staff_member_save
from chatbot.models import InsightRun, Topic
from devtools.browser import eventually

from .conftest import history_add, model_bot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_analyse_now_runs_in_a_worker_with_the_bots_model_and_the_page_shows_it(sim, celery_worker):
    bot = model_bot(sim)
    chats = history_add(bot)
    admin = staff_member_save(username="ada", role="admin", password="correct-horse-battery").user
    client = Client()
    client.force_login(admin)

    response = client.post(reverse("dashboard:insights-refresh"), follow=True)
    assert "Analysing 1 bot(s)" in response.content.decode()
    assert 'id="insights-refresh" disabled' in response.content.decode(), "one run at a time"

    run = eventually(
        lambda: InsightRun.objects.filter(bot=bot, status__in=["done", "failed"]).first(),
        timeout_s=120,
        what=f"the insights run (worker log: {celery_worker.log_path})",
    )
    assert (run.status, run.error, run.trigger) == ("done", "", "on_demand"), celery_worker.log()
    assert run.topics == 2 and run.conversations_summarised == 6
    assert sim.generation_requests(), "the worker asked the bot's model"

    page = client.get(reverse("dashboard:analytics")).content.decode()
    shipping = Topic.objects.get(bot=bot, label="Shipping to Norway")
    assert f'href="/dashboard/?topic={shipping.id}">Shipping to Norway</a>' in page
    assert "on demand analysis" in page and "6 conversations summarised" in page
    chats["annoyed"].refresh_from_db()
    assert chats["annoyed"].insight.sentiment == "negative"
