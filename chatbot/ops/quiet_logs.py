"""Celery logs three INFO lines for every task (beat sends it, the worker receives it, it succeeds). For the sweeps
beat runs every few seconds that is noise that buries everything else: their own modules log when a sweep finds
something, so their routine lines are dropped. Warnings and errors about them still show."""

import logging

# Tasks run by beat every few seconds (settings.CELERY_BEAT_SCHEDULE).
ROUTINE_TASKS = ("chatbot.tasks.lost_answers_finalise",)
# The loggers of Celery's per-task lines: beat's "Sending due task", the worker's "received" and "succeeded".
CELERY_TASK_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class RoutineTaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in ROUTINE_TASKS)


def routine_task_logs_quiet() -> None:
    """Install the filter on Celery's task loggers (once per process)."""
    for name in CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RoutineTaskFilter) for f in logger.filters):
            logger.addFilter(RoutineTaskFilter())
