from celery import shared_task

from chatbot import leads_tasks  # noqa: F401 - registers the lead tasks with the worker
from chatbot.answering import answer_generate


@shared_task(acks_late=True, ignore_result=True)
def answer_message(message_id: int) -> None:
    answer_generate(message_id=message_id)
