"""The insights tasks. Thin: each calls one service. Registered under explicit names (beat schedules name them)."""

from celery import shared_task

from chatbot.insights import runs


@shared_task(name="chatbot.insights.tasks.insights_nightly", ignore_result=True)
def insights_nightly() -> None:
    """Beat, once a night: queue an analysis of every bot with recent questions."""
    runs.insights_schedule_nightly()


@shared_task(name=runs.INSIGHTS_RUN_TASK, ignore_result=True)
def insights_run(run_id: int) -> None:
    runs.insights_run(run_id=run_id)
