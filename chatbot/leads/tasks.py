"""Celery tasks of lead delivery: thin, they re-fetch by id and call one service. Registered under the names they
always had (queued tasks and beat schedules name them)."""

from celery import shared_task

from chatbot.leads import delivery


@shared_task(name="chatbot.leads_tasks.lead_deliver", acks_late=True, ignore_result=True)
def lead_deliver(delivery_id: int) -> None:
    """Send one lead delivery (email or CRM webhook); on failure it stays pending with a backoff, for the beat."""
    delivery.lead_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="chatbot.leads_tasks.lead_deliveries_resend_due", ignore_result=True)
def lead_deliveries_resend_due() -> None:
    """Beat: queue every delivery that is due again (a CRM back after an outage gets everything it missed). The
    claim in lead_delivery_attempt makes a delivery queued twice go out once."""
    for delivery_id in delivery.lead_deliveries_due():
        lead_deliver.delay(delivery_id)
