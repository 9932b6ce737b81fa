"""Insights from the bot's own model, end to end against the TGI simulator over real HTTP: topics of similar
questions labelled by the model, a summary and a sentiment per finished conversation, a token budget, and what
happens without a model or with one that is down."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from chatbot.bots.services import bot_create
from chatbot.dashboard.services import staff_member_save
from chatbot.insights import selectors
from chatbot.insights.runs import ModelServerBusy, insights_request, insights_run, insights_schedule_nightly
from chatbot.models import ConversationInsight, InsightRun, Message, Topic
from chatbot.ops.circuit import circuit_record_failure, circuit_reset
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import insights_lock_key

from .conftest import REFUNDS, SHIPPING, conversation_add, history_add, model_bot

pytestmark = pytest.mark.django_db


def run_now(bot) -> InsightRun:
    run = InsightRun.objects.create(bot=bot, trigger=InsightRun.Trigger.ON_DEMAND)
    return insights_run(run_id=run.id)


def topics_by_label(bot) -> dict[str, set[str]]:
    return {
        selectors.topic_label(topic): set(topic.questions.values_list("message__text", flat=True))
        for topic in Topic.objects.filter(bot=bot)
    }


def test_the_bots_model_labels_the_topics_and_summarises_each_finished_conversation(sim):
    bot = model_bot(sim)
    chats = history_add(bot)

    run = run_now(bot)

    assert (run.status, run.error, run.trigger) == ("done", "", "on_demand")
    assert topics_by_label(bot) == {
        "Shipping to Norway": {*SHIPPING, "Do you deliver to Norway?"},
        "Refunds": set(REFUNDS),
    }
    happy, annoyed = chats["happy"].insight, chats["annoyed"].insight
    assert (happy.summary, happy.sentiment) == (
        "Asked about shipping to Norway and got the delivery times.",
        "positive",
    )
    assert (annoyed.summary, annoyed.sentiment) == ("Waited too long for a refund and was annoyed.", "negative")
    assert chats["lone"].insight.sentiment == "neutral"
    assert not ConversationInsight.objects.filter(conversation=chats["ongoing"]).exists(), "still going"
    assert run.conversations_summarised == 6 and run.topics == 2
    assert run.model == "acme-voice", "the served model's name (TGI names a LoRA adapter's answers after it)"

    # Every request went to the bot's own model, with its adapter, briefly and at a low temperature.
    requests = sim.generation_requests()
    assert len(requests) == 2 + 6
    assert {r["path"] for r in requests} == {"/v1/chat/completions"}
    assert {r["adapter_id"] for r in requests} == {"acme-voice"}
    assert all(r["body"]["max_tokens"] <= 80 and r["body"]["temperature"] == 0.2 for r in requests)
    assert run.tokens_used == sum(r["prompt_tokens"] + r["tokens_sent"] for r in requests)


def test_a_second_run_asks_only_about_what_changed(sim):
    bot = model_bot(sim)
    chats = history_add(bot)
    run_now(bot)
    topic_ids = set(Topic.objects.values_list("id", flat=True))
    sim.reset()
    sim.configure(script_text="Summary: Came back to ask about Oslo.\nSentiment: neutral")

    conversation_add(bot, "v-ship-4", "Do you ship to Oslo in Norway?")
    refund = chats["refund-2"]
    later = timezone.now() - timedelta(hours=1)
    Message.objects.create(conversation=refund, role="visitor", text="Any news?")
    refund.__class__.objects.filter(id=refund.id).update(last_message_at=later)
    run = run_now(bot)

    assert set(Topic.objects.values_list("id", flat=True)) == topic_ids, "the same topics, links keep working"
    assert "Do you ship to Oslo in Norway?" in topics_by_label(bot)["Shipping to Norway"]
    # No label asked again; the new conversation and the one with a new message summarised.
    assert [r["body"]["messages"][-1]["content"].startswith("<<<TRANSCRIPT>>>") for r in sim.generation_requests()] == [
        True,
        True,
    ]
    assert run.conversations_summarised == 2
    refund.refresh_from_db()
    assert refund.insight.summary == "Came back to ask about Oslo."


def test_a_run_stops_at_its_token_budget_and_the_next_one_goes_on(sim, settings):
    bot = model_bot(sim)
    history_add(bot)
    settings.INSIGHTS_TOKEN_BUDGET = 800

    run = run_now(bot)

    assert run.budget_exhausted and run.status == "done"
    assert 0 < run.tokens_used <= 800
    assert 0 < run.conversations_summarised < 6
    settings.INSIGHTS_TOKEN_BUDGET = 100_000
    assert run_now(bot).conversations_summarised == 6 - run.conversations_summarised


def test_without_a_model_topics_are_named_by_their_most_central_question_and_there_is_no_sentiment(sim, settings):
    settings.TGI_URL = ""
    bot = bot_create(slug="plain", name="Plain Bot")
    history_add(bot)

    run = run_now(bot)

    assert (run.status, run.model, run.tokens_used, run.conversations_summarised) == ("done", "", 0, 0)
    labels = topics_by_label(bot)
    assert len(labels) == 2 and all(topic.label == "" for topic in Topic.objects.all())
    assert all(label in questions for label, questions in labels.items()), "each named after one of its questions"
    assert any("Norway" in label for label in labels) and any("refund" in label for label in labels)
    assert not ConversationInsight.objects.exists()
    assert sim.generation_requests() == []


def test_a_model_server_that_is_down_leaves_topics_named_by_their_questions_and_says_so(sim):
    bot = model_bot(sim)
    history_add(bot)
    sim.stop_listening()

    run = run_now(bot)

    assert run.status == "done" and run.error.startswith("The model server could not be used")
    assert run.topics == 2 and not ConversationInsight.objects.exists()
    assert all(topic.label == "" for topic in Topic.objects.all())


def test_it_does_not_ask_a_model_server_that_fails_the_visitors(sim):
    bot = model_bot(sim)
    history_add(bot)
    for _ in range(settings.TGI_CIRCUIT_FAILURES):
        circuit_record_failure(endpoint=bot.endpoint)
    try:
        run = run_now(bot)
    finally:
        circuit_reset(endpoint=bot.endpoint)
    assert "circuit is open" in run.error
    assert sim.generation_requests() == []


def test_one_run_per_bot_at_a_time_and_the_nightly_job_covers_bots_with_recent_questions(
    sim, django_capture_on_commit_callbacks
):
    busy = model_bot(sim)
    history_add(busy)
    quiet = bot_create(slug="quiet", name="Quiet")
    old = bot_create(slug="old", name="Old")
    conversation_add(old, "v-old", "Do you ship to Norway?", minutes_ago=60 * 24 * 40)
    Message.objects.filter(conversation__bot=old).update(created_at=timezone.now() - timedelta(days=40))

    with django_capture_on_commit_callbacks() as queued:
        runs = insights_schedule_nightly()
        again = insights_request(bots=[busy], trigger="on_demand")

    assert [(run.bot, run.trigger, run.status) for run in runs] == [(busy, "nightly", "queued")]
    assert again == [], "already queued"
    assert len(queued) == 1
    assert quiet.insight_runs.count() == old.insight_runs.count() == 0
    assert insights_run(run_id=runs[0].id).status == "done"
    assert insights_run(run_id=runs[0].id).status == "done", "a redelivered task leaves a finished run alone"


def test_runs_take_turns_on_a_model_server_and_a_waiting_one_stays_queued(sim):
    bot = model_bot(sim)
    history_add(bot)
    other = bot_create(slug="globex", name="Globex", model_endpoint=sim.url)
    [run] = insights_request(bots=[bot], trigger="on_demand")
    lock = sync_client().lock(insights_lock_key(other.endpoint), timeout=60, blocking=False)
    assert lock.acquire(), "another bot's run asking the same server"
    try:
        with pytest.raises(ModelServerBusy):
            insights_run(run_id=run.id)
        run.refresh_from_db()
        assert run.status == "queued" and sim.generation_requests() == []
    finally:
        lock.release()
    assert insights_run(run_id=run.id).status == "done"


def test_beat_schedules_the_nightly_job_by_its_registered_name():
    entry = settings.CELERY_BEAT_SCHEDULE["insights-nightly"]
    assert entry["task"] == "chatbot.insights.tasks.insights_nightly"
    assert entry["schedule"].hour == {settings.INSIGHTS_NIGHTLY_HOUR}
    from chatbot.celery import app

    app.loader.import_default_modules()
    assert {"chatbot.insights.tasks.insights_nightly", "chatbot.insights.tasks.insights_run"} <= set(app.tasks)


def test_the_analytics_page_shows_topics_with_trend_and_links_and_the_sentiment(sim):
    bot = model_bot(sim)
    chats = history_add(bot)
    run_now(bot)
    admin = staff_member_save(username="ada", role="admin", password="correct-horse-battery").user
    from django.test import Client

    client = Client()
    client.force_login(admin)

    page = client.get(reverse("dashboard:analytics")).content.decode()

    shipping = Topic.objects.get(label="Shipping to Norway")
    assert f'href="/dashboard/?topic={shipping.id}">Shipping to Norway</a>' in page
    assert "Refunds" in page and "Sentiment of finished conversations" in page
    assert "No model is configured" not in page
    listed = client.get(reverse("dashboard:conversations"), {"topic": shipping.id}).content.decode()
    assert "Topic <strong>Shipping to Norway</strong>" in listed
    assert chats["happy"].id in listed and chats["annoyed"].id not in listed
    transcript = client.get(reverse("dashboard:transcript", args=[chats["annoyed"].id])).content.decode()
    assert "Waited too long for a refund and was annoyed." in transcript and "sentiment-negative" in transcript

    top = selectors.topics_top(bots=[bot])
    assert [(row.label, row.count, row.recent, row.trend_pct) for row in top] == [
        ("Shipping to Norway", 4, 4, None),
        ("Refunds", 2, 2, None),
    ]
    series = selectors.sentiment_series(bots=[bot])
    assert (sum(series.positive), sum(series.neutral), sum(series.negative)) == (1, 4, 1)


def test_the_analytics_page_says_when_a_bot_has_no_model(settings, db):
    settings.TGI_URL = ""
    bot_create(slug="plain", name="Plain Bot")
    admin = staff_member_save(username="ada", role="admin", password="correct-horse-battery").user
    from django.test import Client

    client = Client()
    client.force_login(admin)
    page = client.get(reverse("dashboard:analytics")).content.decode()
    assert "No model is configured for <strong>Plain Bot</strong>" in page
    assert "most central question" in page and "no summaries or sentiment" in page
