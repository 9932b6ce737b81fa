"""Celery tasks of lead capture: thin, they re-fetch by id and call one service in chatbot.leads. Registered with
the worker through chatbot.tasks (which Celery autodiscovers)."""

from celery import shared_task

from chatbot import leads


@shared_task(acks_late=True, ignore_result=True)
def lead_deliver(delivery_id: int) -> None:
    """Send one lead delivery (email or CRM webhook); on failure it stays pending with a backoff, for the beat."""
    leads.lead_delivery_attempt(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def lead_deliveries_resend_due() -> None:
    """Beat: queue every delivery that is due again (a CRM back after an outage gets everything it missed). The
    claim in lead_delivery_attempt makes a delivery queued twice go out once."""
    for delivery_id in leads.lead_deliveries_due():
        lead_deliver.delay(delivery_id)


@shared_task(ignore_result=True)
def leads_purge_expired() -> None:
    """Beat: delete leads older than their bot's retention period."""
    leads.leads_purge_expired()
