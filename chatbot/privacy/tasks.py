"""Celery tasks of data retention. Registered under the names they always had (beat schedules name them)."""

from celery import shared_task

from chatbot.privacy import services


@shared_task(name="chatbot.leads_tasks.leads_purge_expired", ignore_result=True)
def leads_purge_expired() -> None:
    """Beat: delete leads older than their bot's retention period."""
    services.leads_purge_expired()


@shared_task(name="chatbot.privacy.tasks.conversations_purge_expired", ignore_result=True)
def conversations_purge_expired() -> None:
    """Beat: delete conversations older than their bot's conversation retention period (if it has one)."""
    services.conversations_purge_expired()
