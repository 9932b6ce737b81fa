"""First-run polish that no other test module owns: the favicon, and beat's sweep that logs only when it finds
something."""

import logging

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

import chatbot.celery  # noqa: F401  (installs the filter, as in every worker and beat process)


@pytest.mark.django_db
def test_favicon_ico_leads_to_an_icon_that_exists(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("/parley/favicon.svg")
    assert finders.find("parley/favicon.svg")
    assert 'rel="icon"' in client.get(reverse("home")).content.decode()


def test_celerys_routine_lines_for_the_lost_answer_sweep_are_not_logged(caplog):
    caplog.set_level(logging.INFO)
    trace, beat = logging.getLogger("celery.app.trace"), logging.getLogger("celery.beat")
    task = {"name": "chatbot.tasks.lost_answers_finalise", "id": "1", "runtime": 0.01, "return_value": None}
    trace.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", task)
    beat.info("Scheduler: Sending due task %s (%s)", "finalise-lost-answers", "chatbot.tasks.lost_answers_finalise")
    assert caplog.records == []

    # Other tasks, and anything above INFO about the sweep, still show.
    trace.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", {**task, "name": "other.task"})
    trace.error("Task %(name)s[%(id)s] raised unexpected: %(exc)s", {**task, "exc": "boom"})
    assert [record.levelname for record in caplog.records] == ["INFO", "ERROR"]
