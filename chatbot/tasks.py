from celery import shared_task

from chatbot import (
    leads_tasks,  # noqa: F401 - registers the lead tasks with the worker
    watchdog,
)
from chatbot.answering import answer_generate


@shared_task(acks_late=True, ignore_result=True)
def answer_message(message_id: int) -> None:
    answer_generate(message_id=message_id)


@shared_task(ignore_result=True)
def lost_answers_finalise() -> None:
    """Beat: end the answers left streaming by a lost worker or never started, watched by a visitor or not."""
    watchdog.lost_answers_finalise()
