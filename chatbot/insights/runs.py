"""One analysis of a bot's conversations (an InsightRun): topics first (a few short requests), then summaries and
sentiments while the token budget lasts. Queued nightly for every bot with recent questions, or on demand from the
analytics page; one run per bot at a time. Runs in a Celery worker, one model request at a time, never in a
visitor's answer."""

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from chatbot.insights.asking import InsightModel
from chatbot.insights.summaries import conversations_summarise
from chatbot.insights.topics import LOOKBACK_DAYS, topics_refresh
from chatbot.models import Bot, InsightRun, Message
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import insights_lock_key

logger = logging.getLogger(__name__)

INSIGHTS_RUN_TASK = "chatbot.insights.tasks.insights_run"
# A run's lock outlives a worker killed mid-run by this much at most.
LOCK_TTL_S = 2 * 3600
# A run queued or running for longer than this is taken as lost (its worker died): a new one may be queued.
STALE_AFTER = timedelta(hours=2)


def insights_run_active(*, bot: Bot) -> InsightRun | None:
    """The bot's run still queued or running, if any."""
    return (
        InsightRun.objects.filter(
            bot=bot,
            status__in=[InsightRun.Status.QUEUED, InsightRun.Status.RUNNING],
            created_at__gte=timezone.now() - STALE_AFTER,
        )
        .order_by("-created_at")
        .first()
    )


def insights_request(*, bots, trigger: str) -> list[InsightRun]:
    """Queue a run for each bot of `bots` that has none queued or running; returns the runs queued."""
    queued = []
    for bot in bots:
        if insights_run_active(bot=bot) is not None:
            continue
        with transaction.atomic():
            run = InsightRun.objects.create(bot=bot, trigger=trigger)
            transaction.on_commit(lambda run_id=run.id: current_app.send_task(INSIGHTS_RUN_TASK, args=[run_id]))
        queued.append(run)
    return queued


def insights_schedule_nightly(*, now=None) -> list[InsightRun]:
    """The nightly job: a run for every bot visitors asked something in the last LOOKBACK_DAYS."""
    now = now or timezone.now()
    recent = Message.objects.filter(
        conversation__bot=OuterRef("pk"),
        role=Message.Role.VISITOR,
        created_at__gte=now - timedelta(days=LOOKBACK_DAYS),
    )
    bots = Bot.objects.filter(Exists(recent)).order_by("id")
    return insights_request(bots=bots, trigger=InsightRun.Trigger.NIGHTLY)


class ModelServerBusy(Exception):
    """Another run is asking this model server now: try again later (the task retries)."""


def insights_run(*, run_id: int) -> InsightRun | None:
    """Do one queued run. Safe to call twice (a redelivered task): a finished run is left alone. Raises
    ModelServerBusy while another run (of any bot) asks the same model server, or runs for the same bot."""
    run = InsightRun.objects.select_related("bot").filter(id=run_id).first()
    if run is None or run.status in (InsightRun.Status.DONE, InsightRun.Status.FAILED):
        return run
    lock = sync_client().lock(
        insights_lock_key(run.bot.endpoint or f"bot:{run.bot_id}"), timeout=LOCK_TTL_S, blocking=False
    )
    if not lock.acquire():
        raise ModelServerBusy(f"run {run.id} of bot {run.bot.slug} waits for the model server")
    try:
        run.status = InsightRun.Status.RUNNING
        run.save(update_fields=["status"])
        _run(run)
    except Exception as error:
        logger.exception("the insights run %s of bot %s failed", run.id, run.bot.slug)
        run.status, run.error = InsightRun.Status.FAILED, f"{type(error).__name__}: {error}"[:2000]
    else:
        run.status = InsightRun.Status.DONE
    finally:
        run.finished_at = timezone.now()
        run.save()
        lock.release()
    return run


def _run(run: InsightRun) -> None:
    bot = run.bot
    model = InsightModel.for_bot(bot=bot, budget_tokens=settings.INSIGHTS_TOKEN_BUDGET)
    topics = topics_refresh(bot=bot, model=model)
    run.topics = topics.count
    errors = [topics.model_error] if topics.model_error else []
    if model is not None and not topics.model_error:
        summaries = conversations_summarise(bot=bot, model=model)
        run.conversations_summarised = summaries.count
        run.budget_exhausted = summaries.budget_exhausted
        errors += [summaries.model_error] if summaries.model_error else []
    if model is not None:
        run.model = model.model_id
        run.tokens_used = model.tokens_used
        run.budget_exhausted = run.budget_exhausted or topics.budget_exhausted
    if errors:
        run.error = "The model server could not be used: " + "; ".join(errors)
    logger.info(
        "insights of bot %s: %s topics, %s conversations summarised, %s tokens%s",
        bot.slug, run.topics, run.conversations_summarised, run.tokens_used,
        " (budget spent)" if run.budget_exhausted else "",
    )  # fmt: skip
