"""Email that works: lead and handoff emails through a real SMTP server started by the test (aiosmtpd), the staff on
duty as recipients with a link to the conversation, EMAIL_URL, and a console "delivery" shown as such."""

from email import message_from_bytes
from email.message import Message as EmailMessage

import pytest
from aiosmtpd.controller import Controller
from django.test import Client

from chatbot.celery import app as celery_app
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.chat.handoff import handoff_request
from chatbot.chat.handoff_email import handoff_email_send, staff_on_duty_emails
from chatbot.dashboard.services import staff_member_save
from chatbot.leads.capture import lead_capture
from chatbot.leads.delivery import lead_deliveries_send_due
from chatbot.models import LeadDelivery, LeadDeliveryAttempt
from chatbot.settings import email_url_parse
from devtools.stack import free_port

from .conftest import GOOD, lead_bot_create, visit


class Mailbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings):
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.DEFAULT_FROM_EMAIL = "Parley <parley@acme.test>"
    yield mailbox
    controller.stop()


def body(message: EmailMessage) -> str:
    return message.get_payload(decode=True).decode()


def test_a_lead_email_goes_through_a_real_smtp_server_with_links(db, smtp):
    bot = lead_bot_create(notification_email="sales@acme.test")
    conversation = visit(bot)
    lead = lead_capture(conversation=conversation, fields=GOOD).lead

    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: True}

    [message] = smtp.messages
    assert smtp.envelopes == [("parley@acme.test", ["sales@acme.test"])]
    assert message["Subject"] == "[Acme] New lead: Ada Lovelace"
    assert message["Reply-To"] == "ada@example.com"
    text = body(message)
    assert f"/dashboard/bots/acme/leads/{lead.id}/" in text
    assert f"/dashboard/conversations/{conversation.id}/" in text
    assert not LeadDelivery.objects.get().delivered_to_console


def test_an_smtp_server_that_is_down_leaves_the_delivery_pending_with_the_error(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 5
    bot = lead_bot_create(notification_email="sales@acme.test")
    lead_capture(conversation=visit(bot), fields=GOOD)
    assert lead_deliveries_send_due() == {LeadDelivery.objects.get().id: False}
    assert LeadDelivery.objects.get().status == "pending"
    assert "Connection" in LeadDeliveryAttempt.objects.get().error


def test_a_handoff_email_goes_to_the_staff_on_duty_with_a_link(db, smtp, django_capture_on_commit_callbacks):
    bot = lead_bot_create(notification_email="sales@acme.test")
    staff_member_save(username="alan", role="agent", bots=[bot], email="alan@acme.test", password="x-long-password")
    staff_member_save(username="grace", role="admin", email="grace@acme.test", password="x-long-password")
    conversation = visit(bot)
    conversation.visitor_name = "Ada"
    conversation.save(update_fields=["visitor_name"])
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            handoff_request(conversation=conversation)
        with django_capture_on_commit_callbacks(execute=True):
            handoff_request(conversation=conversation)  # asking again sends no second email
    finally:
        celery_app.conf.task_always_eager = eager

    [message] = smtp.messages
    assert smtp.envelopes[0][1] == ["alan@acme.test"]  # the bot's agent, not every administrator
    assert message["Subject"] == "[Acme] Ada asks for a person"
    assert f"/dashboard/conversations/{conversation.id}/" in body(message)


def test_without_agents_the_administrators_then_the_notification_address_are_told(db):
    bot = lead_bot_create(notification_email="sales@acme.test")
    assert staff_on_duty_emails(bot=bot) == ["sales@acme.test"]
    staff_member_save(username="grace", role="admin", email="grace@acme.test", password="x-long-password")
    assert staff_on_duty_emails(bot=bot) == ["grace@acme.test"]
    staff_member_save(username="alan", role="agent", bots=[bot], email="alan@acme.test", password="x-long-password")
    assert staff_on_duty_emails(bot=bot) == ["alan@acme.test"]


def test_nobody_to_tell_sends_nothing(db, smtp):
    bot = lead_bot_create()
    conversation = conversation_resume_or_start(bot=bot, visitor_id="v1")
    assert handoff_email_send(conversation_id=conversation.id, summary="Asked for a person straight away.") == 0
    assert smtp.messages == []


def test_a_console_delivery_says_so_on_the_leads_page(db, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    bot = lead_bot_create(notification_email="sales@acme.test")
    lead = lead_capture(conversation=visit(bot), fields=GOOD).lead
    lead_deliveries_send_due()
    delivery = LeadDelivery.objects.get()
    assert (delivery.status, delivery.delivered_to_console) == ("delivered", True)
    admin = staff_member_save(username="grace", role="admin", password="x-long-password").user
    client = Client()
    client.force_login(admin)
    page = client.get(f"/dashboard/bots/acme/leads/{lead.id}/").content.decode()
    assert "Printed to the server console, not sent" in page
    assert "Email: Delivered" not in page
    assert "printed to the console, not sent" in client.get("/dashboard/bots/acme/leads/").content.decode()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp+tls://user:p%40ss@mail.example.com:587", ("smtp", "mail.example.com", 587, True, False, "p@ss")),
        ("smtp+ssl://user:pw@mail.example.com", ("smtp", "mail.example.com", 465, False, True, "pw")),
        ("smtp://mail.internal", ("smtp", "mail.internal", 25, False, False, None)),
        ("submission://u:pw@smtp.example.com", ("smtp", "smtp.example.com", 587, True, False, "pw")),
        ("console://", ("console", None, None, False, False, None)),
    ],
)
def test_email_url_is_parsed_into_djangos_settings(url, expected):
    parsed = email_url_parse(url)
    backend = parsed["EMAIL_BACKEND"].rsplit(".", 2)[-2]
    assert (backend, parsed["EMAIL_HOST"], parsed["EMAIL_PORT"], parsed["EMAIL_USE_TLS"], parsed["EMAIL_USE_SSL"],
            parsed["EMAIL_HOST_PASSWORD"]) == expected  # fmt: skip


def test_an_unknown_email_url_scheme_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="unknown scheme 'pop3'"):
        email_url_parse("pop3://mail.example.com")
