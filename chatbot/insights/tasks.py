"""The insights tasks. Thin: each calls one service. Registered under explicit names (beat schedules name them)."""

from celery import shared_task

from chatbot.insights import runs

RETRY_AFTER_S = 30


@shared_task(name="chatbot.insights.tasks.insights_nightly", ignore_result=True)
def insights_nightly() -> None:
    """Beat, once a night: queue an analysis of every bot with recent questions."""
    runs.insights_schedule_nightly()


@shared_task(bind=True, name=runs.INSIGHTS_RUN_TASK, ignore_result=True, max_retries=None)
def insights_run(self, run_id: int) -> None:
    try:
        runs.insights_run(run_id=run_id)
    except runs.ModelServerBusy as busy:
        # Runs take turns on a model server; this one stays queued until the other is done.
        raise self.retry(countdown=RETRY_AFTER_S) from busy
