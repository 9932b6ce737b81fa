"""Leads: the bot's contact form, when it is offered, capturing what a visitor submits, delivering it to the sales
team (email and a signed CRM webhook, retried until it arrives), privacy (delete a visitor, retention) and the
brand-voice export (staff answers as a fine-tuning dataset). See docs/leads.md and docs/brand-voice.md.

The form lives in `Bot.lead_form` (JSON):

    {
      "enabled": true,
      "title": "Talk to our team",                  # optional; a default in the visitor's language
      "submit_label": "Send",                       # optional
      "saved_message": "Thanks! We'll be in touch.",# optional
      "fields": [
        {"name": "name", "type": "name", "label": "Your name", "required": false},
        {"name": "email", "type": "email", "required": true},
        {"name": "size", "type": "select", "label": "Team size", "options": ["1-10", "11-50", "51+"]},
        {"name": "consent", "type": "consent", "required": true,
         "label": "I agree that Acme may contact me about my request."}
      ],
      "triggers": {"before_chat": false, "after_messages": 3, "cannot_answer": true, "no_human": true,
                   "buying_intent": true},
      "intent_keywords": ["enterprise plan"]        # optional, added to the built-in ones
    }

A consent field's label is the consent text stored with the lead.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import EmailValidator
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from chatbot.models import (
    ApprovedAnswer,
    Bot,
    Conversation,
    Lead,
    LeadDelivery,
    LeadDeliveryAttempt,
    Message,
)
from chatbot.protocol import LeadFormDefinition, LeadFormField, LeadFormFrame, LeadFormReason

logger = logging.getLogger(__name__)

FIELD_TYPES = ("name", "email", "phone", "company", "text", "select", "consent")
REASONS: tuple[LeadFormReason, ...] = ("before_chat", "after_messages", "cannot_answer", "no_human", "buying_intent")
MAX_FIELDS = 20
MAX_LENGTHS = {"name": 200, "email": 254, "phone": 40, "company": 200, "text": 2000, "select": 200}
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PHONE_CHARS = re.compile(r"^\+?[0-9 ().\-/]+$")
_email_validator = EmailValidator()

LANGUAGES = ("en", "fr", "de")
TEXT = {
    "en": {
        "title": "Leave your details and we'll get back to you",
        "submit": "Send",
        "saved": "Thanks! Our team will get back to you shortly.",
        "required": "This field is required.",
        "email": "Enter a valid email address.",
        "phone": "Enter a valid phone number, for example +44 20 7946 0958.",
        "select": "Choose one of the options.",
        "consent": "Please tick this box to continue.",
        "too_long": "Use at most {max} characters.",
        "invalid": "Enter a valid value.",
        "label.name": "Name",
        "label.email": "Email",
        "label.phone": "Phone",
        "label.company": "Company",
        "label.text": "Message",
        "label.select": "Choose",
        "label.consent": "I agree to be contacted about my request.",
    },
    "fr": {
        "title": "Laissez vos coordonnées, nous vous recontacterons",
        "submit": "Envoyer",
        "saved": "Merci ! Notre équipe vous recontactera rapidement.",
        "required": "Ce champ est obligatoire.",
        "email": "Saisissez une adresse e-mail valide.",
        "phone": "Saisissez un numéro de téléphone valide, par exemple +33 1 23 45 67 89.",
        "select": "Choisissez l’une des options.",
        "consent": "Cochez cette case pour continuer.",
        "too_long": "{max} caractères au maximum.",
        "invalid": "Saisissez une valeur valide.",
        "label.name": "Nom",
        "label.email": "E-mail",
        "label.phone": "Téléphone",
        "label.company": "Entreprise",
        "label.text": "Message",
        "label.select": "Choisir",
        "label.consent": "J’accepte d’être recontacté(e) au sujet de ma demande.",
    },
    "de": {
        "title": "Hinterlassen Sie Ihre Daten, wir melden uns",
        "submit": "Senden",
        "saved": "Danke! Unser Team meldet sich in Kürze bei Ihnen.",
        "required": "Dieses Feld ist erforderlich.",
        "email": "Geben Sie eine gültige E-Mail-Adresse ein.",
        "phone": "Geben Sie eine gültige Telefonnummer ein, zum Beispiel +49 30 1234567.",
        "select": "Wählen Sie eine der Optionen.",
        "consent": "Bitte setzen Sie das Häkchen, um fortzufahren.",
        "too_long": "Höchstens {max} Zeichen.",
        "invalid": "Geben Sie einen gültigen Wert ein.",
        "label.name": "Name",
        "label.email": "E-Mail",
        "label.phone": "Telefon",
        "label.company": "Firma",
        "label.text": "Nachricht",
        "label.select": "Auswählen",
        "label.consent": "Ich bin einverstanden, zu meiner Anfrage kontaktiert zu werden.",
    },
}

# Buying intent: words and phrases in any of our languages (a visitor may write English on a French site).
INTENT_KEYWORDS = {
    "en": ["pricing", "price", "prices", "quote", "quotation", "buy", "buying", "purchase", "demo", "sales",
           "how much", "cost", "costs", "plans", "subscription", "trial", "enterprise"],
    "fr": ["prix", "tarif", "tarifs", "tarification", "devis", "acheter", "achat", "démo", "démonstration",
           "commercial", "commerciaux", "combien", "abonnement", "essai"],
    "de": ["preis", "preise", "preisliste", "angebot", "kaufen", "kauf", "vertrieb", "kosten", "wie viel",
           "abo", "abonnement", "testversion"],
}  # fmt: skip


class LeadFormInvalid(ValueError):
    """A bot's `lead_form` setting is malformed (a staff configuration error, not a visitor's)."""


@dataclass(frozen=True)
class FormField:
    name: str
    type: str
    label: str
    required: bool
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeadForm:
    title: str
    submit_label: str
    saved_message: str
    fields: tuple[FormField, ...]
    triggers: dict[str, Any]
    intent_keywords: tuple[str, ...] = ()
    language: str = "en"

    def trigger_on(self, reason: str) -> bool:
        return bool(self.triggers.get(reason))


def _text(language: str, key: str, **values) -> str:
    return TEXT.get(language, TEXT["en"])[key].format(**values)


def language_of(*, conversation: Conversation | None = None, bot: Bot | None = None) -> str:
    """The visitor's language when known, else the bot's; one of LANGUAGES."""
    for candidate in (conversation.language if conversation else "", (bot or conversation.bot).language, "en"):
        code = (candidate or "").lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


# --- the form definition -------------------------------------------------------------------------------------


def lead_form_parse(*, config: dict | None, language: str = "en") -> LeadForm | None:
    """The bot's form, with defaults filled in for `language`; None when the bot has no (enabled) form.
    Raises LeadFormInvalid for a malformed configuration."""
    if not config or not config.get("enabled", True):
        return None
    if not isinstance(config, dict):
        raise LeadFormInvalid("lead_form must be an object")
    raw_fields = config.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise LeadFormInvalid("lead_form.fields must be a non-empty list")
    if len(raw_fields) > MAX_FIELDS:
        raise LeadFormInvalid(f"lead_form can have at most {MAX_FIELDS} fields")
    fields: list[FormField] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_fields):
        if not isinstance(raw, dict):
            raise LeadFormInvalid(f"field {index} must be an object")
        kind = raw.get("type")
        if kind not in FIELD_TYPES:
            raise LeadFormInvalid(f"field {index}: type must be one of {', '.join(FIELD_TYPES)}")
        name = raw.get("name", kind)
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise LeadFormInvalid(f"field {index}: name must be lowercase letters, digits and _ (at most 40)")
        if name in seen:
            raise LeadFormInvalid(f"field {index}: the name {name!r} is used twice")
        seen.add(name)
        options: tuple[str, ...] = ()
        if kind == "select":
            raw_options = raw.get("options")
            if (
                not isinstance(raw_options, list)
                or not raw_options
                or not all(isinstance(option, str) and option.strip() for option in raw_options)
            ):
                raise LeadFormInvalid(f"field {index}: a select needs a list of option strings")
            options = tuple(option.strip() for option in raw_options)
        label = raw.get("label")
        if label is not None and not isinstance(label, str):
            raise LeadFormInvalid(f"field {index}: label must be a string")
        fields.append(
            FormField(
                name=name,
                type=kind,
                label=(label or "").strip() or _text(language, f"label.{kind}"),
                required=bool(raw.get("required", False)),
                options=options,
            )
        )
    triggers = config.get("triggers") or {}
    if not isinstance(triggers, dict) or not set(triggers) <= set(REASONS):
        raise LeadFormInvalid(f"lead_form.triggers may only name {', '.join(REASONS)}")
    after = triggers.get("after_messages")
    if after is not None and after is not False and (not isinstance(after, int) or after < 0):
        raise LeadFormInvalid("lead_form.triggers.after_messages must be a number of visitor messages (0: off)")
    keywords = config.get("intent_keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise LeadFormInvalid("lead_form.intent_keywords must be a list of strings")
    return LeadForm(
        title=str(config.get("title") or "").strip() or _text(language, "title"),
        submit_label=str(config.get("submit_label") or "").strip() or _text(language, "submit"),
        saved_message=str(config.get("saved_message") or "").strip() or _text(language, "saved"),
        fields=tuple(fields),
        triggers=dict(triggers),
        intent_keywords=tuple(k.strip().lower() for k in keywords if k.strip()),
        language=language,
    )


def lead_form_for(*, conversation: Conversation) -> LeadForm | None:
    """The conversation's bot's form in the visitor's language; a broken configuration is logged and counts as
    no form (the chat keeps working)."""
    try:
        return lead_form_parse(config=conversation.bot.lead_form, language=language_of(conversation=conversation))
    except LeadFormInvalid as error:
        logger.error("bot %s has an invalid lead_form: %s", conversation.bot.slug, error)
        return None


def lead_form_payload(form: LeadForm) -> LeadFormDefinition:
    return LeadFormDefinition(
        title=form.title,
        submit_label=form.submit_label,
        fields=[
            LeadFormField(name=f.name, type=f.type, label=f.label, required=f.required, options=list(f.options))
            for f in form.fields
        ],
    )


# --- validation ----------------------------------------------------------------------------------------------


def _is_checked(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("on", "true", "1", "yes"))


def lead_fields_validate(*, form: LeadForm, submitted: dict) -> tuple[dict[str, Any], dict[str, str]]:
    """Check what a visitor submitted against the form. Returns (clean values by field name, error message by
    field name); unknown fields are ignored, empty optional fields left out."""
    language = form.language
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in form.fields:
        value = submitted.get(f.name)
        if f.type == "consent":
            checked = _is_checked(value)
            if f.required and not checked:
                errors[f.name] = _text(language, "consent")
            elif checked:
                clean[f.name] = True
            continue
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[f.name] = _text(language, "invalid")
            continue
        value = _CONTROL.sub("", value).strip()
        if f.type != "text":
            value = " ".join(value.split())
        if not value:
            if f.required:
                errors[f.name] = _text(language, "required")
            continue
        if len(value) > MAX_LENGTHS[f.type]:
            errors[f.name] = _text(language, "too_long", max=MAX_LENGTHS[f.type])
            continue
        if f.type == "email":
            try:
                _email_validator(value)
            except ValidationError:
                errors[f.name] = _text(language, "email")
                continue
        elif f.type == "phone":
            digits = sum(ch.isdigit() for ch in value)
            if not _PHONE_CHARS.match(value) or not 7 <= digits <= 15 or "+" in value[1:]:
                errors[f.name] = _text(language, "phone")
                continue
        elif f.type == "select" and value not in f.options:
            errors[f.name] = _text(language, "select")
            continue
        clean[f.name] = value
    return clean, errors


# --- when the form is shown ----------------------------------------------------------------------------------


def buying_intent_detect(*, text: str, extra_keywords: Iterable[str] = ()) -> bool:
    """Whether a visitor's message sounds like buying: a keyword or phrase of any language, as whole words."""
    words = [keyword for keywords in INTENT_KEYWORDS.values() for keyword in keywords]
    words += list(extra_keywords)
    pattern = r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + r")(?!\w)"
    return re.search(pattern, text.lower()) is not None


def _lead_captured(conversation: Conversation) -> bool:
    return Lead.objects.filter(conversation=conversation).exists()


def _offer(conversation: Conversation, form: LeadForm, reason: LeadFormReason, *, again: bool) -> LeadFormFrame | None:
    """Record the offer and build its frame. A form is offered once per conversation (it stays on screen, and
    comes back on reconnect) unless `again`; never after the visitor dismissed it (unless `again`) or left a lead."""
    if not form.trigger_on(reason) or _lead_captured(conversation):
        return None
    offers = Conversation.objects.filter(pk=conversation.pk)
    if not again:
        offers = offers.filter(lead_form_reason="", lead_form_dismissed_at__isnull=True)
    if not offers.update(lead_form_reason=reason):
        return None  # already offered (perhaps at the same moment by another process) or dismissed
    conversation.lead_form_reason = reason
    return LeadFormFrame(type="lead_form", reason=reason, form=lead_form_payload(form))


def lead_form_on_hello(*, conversation: Conversation) -> LeadFormFrame | None:
    """After `ready`: the form offered earlier and still open (the widget lost it when it reconnected), or the
    form before the chat starts."""
    form = lead_form_for(conversation=conversation)
    if form is None or conversation.lead_form_dismissed_at is not None or _lead_captured(conversation):
        return None
    if conversation.lead_form_reason:
        return LeadFormFrame(type="lead_form", reason=conversation.lead_form_reason, form=lead_form_payload(form))
    return _offer(conversation, form, "before_chat", again=False)


def lead_form_after_visitor_message(*, conversation: Conversation) -> LeadFormFrame | None:
    """After the visitor's Nth message (`triggers.after_messages`)."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    after = form.triggers.get("after_messages") or 0
    if not after or conversation.messages.filter(role=Message.Role.VISITOR).count() < after:
        return None
    return _offer(conversation, form, "after_messages", again=False)


def lead_form_on_handoff_unavailable(*, conversation: Conversation) -> LeadFormFrame | None:
    """The visitor asked for a person and nobody is available: offered even if shown or dismissed before."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    return _offer(conversation, form, "no_human", again=True)


def _cannot_answer(outcome: Any) -> bool:
    status = getattr(outcome, "status", "")
    return getattr(outcome, "finish_reason", "") == "no_relevant_passages" or (
        status == Message.Status.RETRIEVAL_ONLY and not getattr(outcome, "citations", None)
    )


def lead_form_offer_reason(*, conversation: Conversation, question: str, outcome: Any) -> LeadFormReason | None:
    """Why the bot should offer the form after this answer, if it should: it could not answer (strict mode found
    nothing, or the model was down and no passage was relevant), or the question shows buying intent.
    `outcome` is the answer pipeline's AnswerOutcome (read: status, finish_reason, citations)."""
    form = lead_form_for(conversation=conversation)
    if form is None:
        return None
    if form.trigger_on("cannot_answer") and _cannot_answer(outcome):
        return "cannot_answer"
    if form.trigger_on("buying_intent") and buying_intent_detect(text=question, extra_keywords=form.intent_keywords):
        return "buying_intent"
    return None


def lead_form_after_answer(*, conversation: Conversation, question: str, outcome: Any) -> LeadFormReason | None:
    """For the answer pipeline, after it sent `chat.done`: offers the form to every open widget of the
    conversation when the answer calls for it. Returns the reason it was offered, or None."""
    from chatbot.relay import relay

    reason = lead_form_offer_reason(conversation=conversation, question=question, outcome=outcome)
    if reason is None:
        return None
    form = lead_form_for(conversation=conversation)
    frame = _offer(conversation, form, reason, again=False)
    if frame is None:
        return None
    relay().group_send(conversation.group_name, {"type": "chat.frame", "frame": dict(frame)})
    return reason


def lead_form_dismiss(*, conversation: Conversation) -> None:
    Conversation.objects.filter(pk=conversation.pk, lead_form_dismissed_at__isnull=True).update(
        lead_form_dismissed_at=timezone.now()
    )


# --- capture -------------------------------------------------------------------------------------------------

DEDUPE_WINDOW = timedelta(days=1)


@dataclass
class LeadCaptureResult:
    lead: Lead | None
    created: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    message: str = ""


def utm_parse(url: str) -> dict[str, str]:
    """The utm_* parameters of a page's address (`utm_source` → `source`)."""
    try:
        query = urlsplit(url or "").query
    except ValueError:
        return {}
    return {
        key[4:]: value[:200] for key, value in parse_qsl(query) if key.startswith("utm_") and len(key) > 4 and value
    }


def _lock_lead_key(bot: Bot, key: str) -> None:
    """Serialise captures of the same visitor for the same bot (two quick submits make one lead, not two)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [bot.id, zlib.crc32(key.encode()) - 2**31])


def _delivery_channels(bot: Bot) -> list[str]:
    channels = []
    if bot.notification_email:
        channels.append(LeadDelivery.Channel.EMAIL)
    if bot.crm_webhook_url:
        channels.append(LeadDelivery.Channel.WEBHOOK)
    return channels


def _deliveries_schedule(lead: Lead, *, now: datetime) -> list[int]:
    """One pending delivery per channel carrying the lead's current version: a delivery still pending (not yet
    delivered, perhaps waiting for a CRM that is down) takes the new version instead of a second one being made."""
    ids = []
    for channel in _delivery_channels(lead.bot):
        pending = (
            LeadDelivery.objects.select_for_update()
            .filter(lead=lead, channel=channel, status=LeadDelivery.Status.PENDING)
            .first()
        )
        if pending is None:
            pending = LeadDelivery.objects.create(
                lead=lead, channel=channel, lead_version=lead.updated_at, next_attempt_at=now
            )
        else:
            pending.lead_version, pending.next_attempt_at = lead.updated_at, now
            pending.save(update_fields=["lead_version", "next_attempt_at"])
        ids.append(pending.id)
    return ids


@transaction.atomic
def lead_capture(*, conversation: Conversation, fields: dict, now: datetime | None = None) -> LeadCaptureResult:
    """Validate and store what the visitor submitted, with where they came from; queue its delivery once
    committed. The same email for the same bot within a day updates that lead instead of making a second one
    (without an email: the same conversation within a day)."""
    from chatbot.leads_tasks import lead_deliver

    now = now or timezone.now()
    form = lead_form_for(conversation=conversation)
    if form is None:
        return LeadCaptureResult(
            lead=None, errors={"__all__": _text(language_of(conversation=conversation), "invalid")}
        )
    clean, errors = lead_fields_validate(form=form, submitted=fields if isinstance(fields, dict) else {})
    if errors:
        return LeadCaptureResult(lead=None, errors=errors)
    bot = conversation.bot
    by_type = {}
    for f in form.fields:
        if f.name in clean:
            by_type.setdefault(f.type, clean[f.name])
    email = by_type.get("email", "")
    _lock_lead_key(bot, email.lower() if email else f"conversation:{conversation.pk}")
    recent = Lead.objects.select_for_update().filter(bot=bot, created_at__gte=now - DEDUPE_WINDOW)
    lead = (recent.filter(email__iexact=email) if email else recent.filter(conversation=conversation, email="")).first()
    consent = next((f for f in form.fields if f.type == "consent" and clean.get(f.name)), None)
    created = lead is None
    if created:
        lead = Lead(bot=bot)
    lead.conversation = conversation
    lead.email = email or lead.email
    lead.name = by_type.get("name") or lead.name
    lead.data = {**(lead.data or {}), **clean}
    lead.page_url = conversation.page_url or lead.page_url
    lead.referrer = conversation.referrer or lead.referrer
    lead.utm = utm_parse(conversation.page_url) or lead.utm
    if consent is not None:
        lead.consent_text, lead.consent_at = consent.label, now
    lead.save()
    if created:  # auto_now_add ignores a given value; `now` may be a test's clock
        Lead.objects.filter(pk=lead.pk).update(created_at=now)
        lead.created_at = now
    ids = _deliveries_schedule(lead, now=now)
    Conversation.objects.filter(pk=conversation.pk).update(lead_form_reason="")
    transaction.on_commit(lambda: [lead_deliver.delay(delivery_id) for delivery_id in ids])
    return LeadCaptureResult(lead=lead, created=created, message=form.saved_message)


# --- delivery ------------------------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Parley-Signature"
TIMESTAMP_HEADER = "X-Parley-Timestamp"
WEBHOOK_TIMEOUT_S = 10.0
# While one worker sends a delivery, nobody else may: the claim holds the row this long (longer than a send).
CLAIM_LEASE = timedelta(minutes=2)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
# A CRM that is down for a long weekend still gets every lead; after this a delivery is marked failed.
GIVE_UP_AFTER = timedelta(days=7)


def delivery_backoff(*, attempts: int) -> timedelta:
    """How long to wait after the `attempts`th failed attempt: 30 s, 1 min, 2 min, … at most an hour."""
    # The exponent is capped: a CRM down for a week means about 170 attempts, and 2**170 seconds overflows.
    return min(BACKOFF_FIRST * 2 ** min(max(attempts - 1, 0), 20), BACKOFF_MAX)


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the bot's webhook secret over `<timestamp>.<raw body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_signature_verify(
    *, secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (the reference for docs/leads.md): a fresh timestamp and a matching signature."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return age <= tolerance_s and hmac.compare_digest(expected, signature)


def lead_payload(*, lead: Lead, event: str, version: datetime) -> dict:
    return {
        "event": event,
        "lead": {
            "id": lead.id,
            "version": version.isoformat(),
            "bot": lead.bot.slug,
            "email": lead.email,
            "name": lead.name,
            "fields": lead.data,
            "page_url": lead.page_url,
            "referrer": lead.referrer,
            "utm": lead.utm,
            "consent": {"text": lead.consent_text, "at": lead.consent_at.isoformat() if lead.consent_at else None},
            "conversation_id": lead.conversation_id,
            "created_at": lead.created_at.isoformat(),
            "updated_at": lead.updated_at.isoformat(),
        },
    }


@dataclass
class _Sent:
    succeeded: bool
    response_code: int | None = None
    error: str = ""


def _send_webhook(*, delivery: LeadDelivery, payload: dict) -> _Sent:
    bot = delivery.lead.bot
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Parley-Webhook/1",
        "X-Parley-Event": payload["event"],
        # The same for every attempt of one version: a receiver can drop a repeat after a worker crash.
        "X-Parley-Delivery": f"{delivery.id}-{int(delivery.lead_version.timestamp() * 1_000_000)}",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=bot.crm_webhook_secret, timestamp=timestamp, body=body),
    }
    try:
        response = httpx.post(
            bot.crm_webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False
        )
    except httpx.HTTPError as error:
        return _Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    if 200 <= response.status_code < 300:
        return _Sent(True, response.status_code)
    return _Sent(False, response.status_code, f"HTTP {response.status_code}: {response.text[:300]}")


def _email_body(lead: Lead, event: str) -> str:
    lines = [f"{'Updated' if event == 'lead.updated' else 'New'} lead from the chat of {lead.bot.name}.", ""]
    lines += [f"{key}: {value}" for key, value in lead.data.items()]
    lines += ["", f"Page: {lead.page_url or '-'}", f"Referrer: {lead.referrer or '-'}"]
    if lead.utm:
        lines.append("Campaign: " + ", ".join(f"utm_{key}={value}" for key, value in sorted(lead.utm.items())))
    if lead.consent_at:
        lines.append(f"Consent ({lead.consent_at:%Y-%m-%d %H:%M %Z}): {lead.consent_text}")
    path = reverse("lead-detail", kwargs={"slug": lead.bot.slug, "lead_id": lead.id})
    lines += ["", f"In Parley: {settings.SITE_URL}{path}"]
    return "\n".join(lines)


def _send_email(*, delivery: LeadDelivery, payload: dict) -> _Sent:
    lead = delivery.lead
    subject = f"[{lead.bot.name}] {'Updated' if payload['event'] == 'lead.updated' else 'New'} lead: "
    subject += lead.name or lead.email or f"#{lead.id}"
    message = EmailMessage(
        subject=subject,
        body=_email_body(lead, payload["event"]),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[lead.bot.notification_email],
        reply_to=[lead.email] if lead.email else None,
    )
    try:
        message.send()
    except Exception as error:  # SMTP and backend errors have no common base class
        return _Sent(False, error=f"{type(error).__name__}: {error}"[:500])
    return _Sent(True)


def _claim(delivery_id: int, now: datetime) -> tuple[LeadDelivery, dict] | None:
    """Take a due delivery for this worker: counted as an attempt and hidden from others for CLAIM_LEASE."""
    with transaction.atomic():
        delivery = (
            LeadDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("lead__bot")
            .filter(id=delivery_id, status=LeadDelivery.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM_LEASE
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        earlier = LeadDelivery.objects.filter(
            lead_id=delivery.lead_id, channel=delivery.channel, status=LeadDelivery.Status.DELIVERED
        ).exists()
        event = "lead.updated" if earlier else "lead.created"
        return delivery, lead_payload(lead=delivery.lead, event=event, version=delivery.lead_version)


def lead_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> bool | None:
    """Send one delivery if it is due and nobody else is sending it; record the attempt. Returns True (delivered),
    False (failed, retried later with backoff) or None (not due, already delivered, or taken by another worker)."""
    now = now or timezone.now()
    claimed = _claim(delivery_id, now)
    if claimed is None:
        return None
    delivery, payload = claimed
    send = _send_webhook if delivery.channel == LeadDelivery.Channel.WEBHOOK else _send_email
    sent = send(delivery=delivery, payload=payload)
    with transaction.atomic():
        attempt = LeadDeliveryAttempt.objects.create(
            delivery_id=delivery.id, succeeded=sent.succeeded, response_code=sent.response_code, error=sent.error
        )
        LeadDeliveryAttempt.objects.filter(id=attempt.id).update(attempted_at=now)
        # Only if the lead was not updated meanwhile: otherwise the row now carries a newer version, due at once.
        same_version = LeadDelivery.objects.filter(id=delivery.id, lead_version=delivery.lead_version)
        if sent.succeeded:
            same_version.update(status=LeadDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
        elif now - delivery.created_at >= GIVE_UP_AFTER:
            same_version.update(status=LeadDelivery.Status.FAILED, next_attempt_at=None)
            logger.error("gave up delivering lead %s by %s", delivery.lead_id, delivery.channel)
        else:
            same_version.update(next_attempt_at=now + delivery_backoff(attempts=delivery.attempts))
    if not sent.succeeded:
        logger.warning("lead delivery %s (%s) failed: %s", delivery.id, delivery.channel, sent.error)
    return sent.succeeded


def lead_deliveries_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        LeadDelivery.objects.filter(status=LeadDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("id", flat=True)[:limit]
    )


def lead_deliveries_send_due(*, now: datetime | None = None) -> dict[int, bool | None]:
    """Attempt every due delivery here and now (what the beat task queues one by one); for tests and operators."""
    return {
        delivery_id: lead_delivery_attempt(delivery_id=delivery_id, now=now)
        for delivery_id in lead_deliveries_due(now=now)
    }


# --- reading: dashboard and CSV ------------------------------------------------------------------------------


def leads_filter(
    *, bot: Bot, since: date | None = None, until: date | None = None, consent: bool | None = None
) -> QuerySet[Lead]:
    """A bot's leads, newest first; `since`/`until` are days (inclusive) in the instance's time zone."""
    leads = Lead.objects.filter(bot=bot)
    if since:
        leads = leads.filter(created_at__date__gte=since)
    if until:
        leads = leads.filter(created_at__date__lte=until)
    if consent is True:
        leads = leads.filter(consent_at__isnull=False)
    elif consent is False:
        leads = leads.filter(consent_at__isnull=True)
    return leads.order_by("-created_at", "-id")


UTM_KEYS = ("source", "medium", "campaign", "term", "content")


def _csv_safe(value: Any) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: a visitor could type one into the form."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def leads_csv_write(*, bot: Bot, leads: Iterable[Lead], out: IO[str]) -> int:
    """Write leads as CSV: fixed columns, then one per form field (the bot's form first, then any other field a
    lead has). Returns the number of rows."""
    leads = list(leads)
    try:
        form = lead_form_parse(config=bot.lead_form, language=language_of(bot=bot))
    except LeadFormInvalid:
        form = None
    fixed = ["id", "created_at", "updated_at", "email", "name"]
    field_names = [f.name for f in form.fields if f.name not in fixed] if form else []
    for lead in leads:
        field_names += [key for key in lead.data if key not in field_names and key not in fixed]
    writer = csv.writer(out)
    writer.writerow(
        [*fixed, *field_names, "page_url", "referrer",
         *(f"utm_{key}" for key in UTM_KEYS), "consent_text", "consent_at", "conversation_id"]
    )  # fmt: skip
    for lead in leads:
        # What visitors (or links they followed) typed is made safe; what Parley generated is written exactly,
        # so that an id like "-fphTSSRya1muj" still matches its conversation.
        typed = [
            lead.email, lead.name, *(lead.data.get(name, "") for name in field_names), lead.page_url,
            lead.referrer, *(lead.utm.get(key, "") for key in UTM_KEYS), lead.consent_text,
        ]  # fmt: skip
        writer.writerow(
            [lead.id, lead.created_at.isoformat(), lead.updated_at.isoformat(), *map(_csv_safe, typed),
             lead.consent_at.isoformat() if lead.consent_at else "", lead.conversation_id or ""]
        )  # fmt: skip
    return len(leads)


# --- privacy -------------------------------------------------------------------------------------------------


@dataclass
class VisitorDataDeleted:
    conversations: int = 0
    messages: int = 0
    leads: int = 0


@transaction.atomic
def visitor_data_delete(*, bot: Bot, email: str | None = None, visitor_id: str | None = None) -> VisitorDataDeleted:
    """Delete everything a visitor left with a bot: their leads (with their deliveries), and every conversation
    (with its messages) of the visitor, found by visitor id or through their leads' conversations."""
    email = (email or "").strip()
    visitor_id = (visitor_id or "").strip()
    if not email and not visitor_id:
        raise ValueError("give an email or a visitor id")
    leads = Lead.objects.filter(bot=bot).filter(
        (Q(email__iexact=email) if email else Q(pk__in=[]))
        | (Q(conversation__visitor_id=visitor_id) if visitor_id else Q(pk__in=[]))
    )
    visitor_ids = set(leads.exclude(conversation=None).values_list("conversation__visitor_id", flat=True))
    if visitor_id:
        visitor_ids.add(visitor_id)
    conversations = Conversation.objects.filter(bot=bot, visitor_id__in=visitor_ids)
    # Leads of this visitor in any of their conversations, even one left with another email.
    leads = Lead.objects.filter(Q(pk__in=leads.values("pk")) | Q(conversation__in=conversations))
    result = VisitorDataDeleted(
        conversations=conversations.count(),
        messages=Message.objects.filter(conversation__in=conversations).count(),
        leads=leads.count(),
    )
    leads.delete()
    conversations.delete()
    logger.info(
        "deleted a visitor's data for bot %s: %s conversations, %s messages, %s leads",
        bot.slug, result.conversations, result.messages, result.leads,
    )  # fmt: skip
    return result


def leads_purge_expired(*, now: datetime | None = None) -> int:
    """Delete every lead older than its bot's `lead_retention_days`; returns how many."""
    now = now or timezone.now()
    deleted = 0
    for bot in Bot.objects.only("id", "lead_retention_days"):
        expired = Lead.objects.filter(bot=bot, created_at__lt=now - timedelta(days=bot.lead_retention_days))
        deleted += expired.delete()[1].get("chatbot.Lead", 0)
    return deleted


# --- brand voice: the fine-tuning dataset ---------------------------------------------------------------------

PASSAGES_PER_EXAMPLE = 5


@dataclass(frozen=True)
class FinetuneSource:
    kind: str  # approved_answer | corrected_answer | staff_reply
    question: str
    answer: str
    prompt: tuple = ()  # the messages sent to the model in production, when known


def _finetune_sources(bot: Bot) -> Iterator[FinetuneSource]:
    for approved in ApprovedAnswer.objects.filter(bot=bot).order_by("created_at", "id"):
        yield FinetuneSource("approved_answer", approved.question, approved.answer)
    corrected = (
        Message.objects.filter(conversation__bot=bot, role=Message.Role.BOT)
        .exclude(corrected_text="")
        .select_related("in_reply_to")
        .order_by("created_at", "id")
    )
    for message in corrected:
        question = message.in_reply_to.text if message.in_reply_to else ""
        prompt = tuple(m for m in message.prompt if isinstance(m, dict)) if message.prompt else ()
        yield FinetuneSource("corrected_answer", question, message.corrected_text, prompt)
    staff = Message.objects.filter(conversation__bot=bot, role=Message.Role.STAFF).order_by("created_at", "id")
    for message in staff:
        question = (
            Message.objects.filter(
                conversation_id=message.conversation_id, role=Message.Role.VISITOR, created_at__lte=message.created_at
            )
            .order_by("-created_at", "-id")
            .values_list("text", flat=True)
            .first()
        )
        if question:
            yield FinetuneSource("staff_reply", question, message.corrected_text or message.text)


def _passages_for(bot: Bot, question: str) -> list:
    from inference.prompts import Passage
    from knowledge.retrieval import chunk_search

    if bot.knowledge_base_id is None:
        return []
    search = chunk_search(knowledge_base_id=bot.knowledge_base_id, query=question, k=PASSAGES_PER_EXAMPLE)
    if not search.relevant:
        return []
    return [
        Passage(n=n, title=c.title, url=c.url, text=c.text, heading_path=" › ".join(c.heading_path))
        for n, c in enumerate(search.chunks, start=1)
    ]


def finetune_examples(*, bot: Bot, retrieve: bool = True) -> Iterator[dict]:
    """Chat-format training examples from the bot's approved answers and its staff-corrected and staff-written
    replies: `{"messages": [system, user, assistant]}`. The system prompt is built with production's templates
    (the bot's persona and the passages retrieved for the question now; the prompt exactly as sent, for a corrected
    answer that kept it). Duplicates (same question and answer) are left out."""
    from inference.prompts import render_messages, render_system_prompt

    seen: set[tuple[str, str]] = set()
    for source in _finetune_sources(bot):
        question, answer = source.question.strip(), source.answer.strip()
        key = (" ".join(question.lower().split()), " ".join(answer.split()))
        if not question or not answer or key in seen:
            continue
        seen.add(key)
        if source.prompt and source.prompt[0].get("role") == "system" and source.prompt[-1].get("role") == "user":
            messages = [{"role": m["role"], "content": m["content"]} for m in source.prompt]
        else:
            passages = _passages_for(bot, question) if retrieve else []
            system_prompt = render_system_prompt(persona=bot.persona, passages=passages)
            messages = render_messages(system_prompt=system_prompt, history=[], question=question)
        messages.append({"role": "assistant", "content": answer})
        yield {"messages": messages}


def finetune_export(*, bot: Bot, out: IO[str], retrieve: bool = True) -> int:
    """Write the JSONL dataset; returns the number of examples."""
    count = 0
    for example in finetune_examples(bot=bot, retrieve=retrieve):
        out.write(json.dumps(example, ensure_ascii=False) + "\n")
        count += 1
    return count
