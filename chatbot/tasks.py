from celery import shared_task

from chatbot.answering import answer_generate


@shared_task(acks_late=True, ignore_result=True)
def answer_message(message_id: int) -> None:
    answer_generate(message_id=message_id)
