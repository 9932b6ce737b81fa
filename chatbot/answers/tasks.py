"""The answer tasks. Thin: they call one service. Registered under the names they always had (queued tasks and
beat schedules name them)."""

from celery import shared_task

from chatbot.answers import watchdog
from chatbot.answers.pipeline import answer_generate
from chatbot.answers.progress import ANSWER_TASK_NAME


@shared_task(name=ANSWER_TASK_NAME, acks_late=True, ignore_result=True)
def answer_message(message_id: int, question: str | None = None) -> None:
    # `question` (the visitor's text, sent along by the socket that saved it) lets the worker start the question's
    # embedding before it loads the message; tasks queued without it still answer.
    answer_generate(message_id=message_id, question_hint=question)


@shared_task(name="chatbot.tasks.lost_answers_finalise", ignore_result=True)
def lost_answers_finalise() -> None:
    """Beat: end the answers left streaming by a lost worker or never started, watched by a visitor or not."""
    watchdog.lost_answers_finalise()
