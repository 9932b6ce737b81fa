"""Celery tasks of event webhooks: thin, they re-fetch by id and call one service."""

from celery import shared_task

from chatbot.webhooks import sending


@shared_task(name="chatbot.webhooks_tasks.webhook_deliver", acks_late=True, ignore_result=True)
def webhook_deliver(delivery_id: int) -> None:
    """Send one event delivery; on failure it stays pending with a backoff, for the beat."""
    sending.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="chatbot.webhooks_tasks.webhook_deliveries_resend_due", ignore_result=True)
def webhook_deliveries_resend_due() -> None:
    """Beat: queue every event delivery that is due again. The claim makes one queued twice go out once."""
    for delivery_id in sending.webhook_deliveries_due():
        webhook_deliver.delay(delivery_id)
