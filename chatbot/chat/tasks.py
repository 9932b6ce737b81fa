"""Celery tasks of the chat: thin, they call one service."""

from celery import shared_task
from django.db import transaction

from chatbot.chat.handoff_email import handoff_email_send


# SMTP servers have bad minutes: retried with backoff (30 s, 1 min, … for about an hour), then logged by Celery.
@shared_task(
    name="chatbot.chat_tasks.handoff_email",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=900,
    max_retries=8,
)
def handoff_email(conversation_id: str, summary: str) -> None:
    handoff_email_send(conversation_id=conversation_id, summary=summary)


def handoff_email_after_commit(*, conversation_id: str, summary: str) -> None:
    transaction.on_commit(lambda: handoff_email.delay(conversation_id, summary))
