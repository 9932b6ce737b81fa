"""The answer tasks. Thin: they call one service. Registered under the names they always had (queued tasks and
beat schedules name them)."""

from celery import shared_task
from celery.signals import task_received, worker_ready

from chatbot.answers import watchdog
from chatbot.answers.pipeline import answer_generate, question_embedding_early
from chatbot.answers.progress import ANSWER_TASK_NAME
from chatbot.ops.gc_pauses import first_answer_objects_freeze, long_lived_objects_freeze


@shared_task(name=ANSWER_TASK_NAME, acks_late=True, ignore_result=True)
def answer_message(message_id: int, question: str | None = None) -> None:
    # `question` (the visitor's text, sent along by the socket that saved it) lets the worker start the question's
    # embedding before it loads the message; tasks queued without it still answer.
    answer_generate(message_id=message_id, question_hint=question)
    first_answer_objects_freeze()


@worker_ready.connect
def _long_lived_objects_freeze(**kwargs) -> None:
    """Keep the collector's full passes short while this worker streams answers (chatbot.ops.gc_pauses)."""
    long_lived_objects_freeze()


@task_received.connect
def _question_embedding_early(sender=None, request=None, **kwargs) -> None:
    """Start the question's embedding when this worker receives the answer task, before one of its threads takes
    it up (about a millisecond before the first token's path needs it); the thread finds it under way."""
    if request is None or request.name != ANSWER_TASK_NAME:
        return
    question = (request.kwargs or {}).get("question")
    if isinstance(question, str):
        question_embedding_early(question)


@shared_task(name="chatbot.tasks.lost_answers_finalise", ignore_result=True)
def lost_answers_finalise() -> None:
    """Beat: end the answers left streaming by a lost worker or never started, watched by a visitor or not."""
    watchdog.lost_answers_finalise()
