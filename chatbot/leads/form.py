"""The lead form: its schema (parsed from the bot's setting), its texts in the visitor's language, and checking
what a visitor submits. When it is shown: chatbot.leads.triggers; storing a lead: chatbot.leads.capture;
delivering it: chatbot.leads.delivery. See docs/leads.md.

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

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from chatbot.models import Bot, Conversation
from chatbot.realtime.protocol import LeadFormDefinition, LeadFormField, LeadFormReason

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


def form_text(language: str, key: str, **values) -> str:
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
                label=(label or "").strip() or form_text(language, f"label.{kind}"),
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
        title=str(config.get("title") or "").strip() or form_text(language, "title"),
        submit_label=str(config.get("submit_label") or "").strip() or form_text(language, "submit"),
        saved_message=str(config.get("saved_message") or "").strip() or form_text(language, "saved"),
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
                errors[f.name] = form_text(language, "consent")
            elif checked:
                clean[f.name] = True
            continue
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[f.name] = form_text(language, "invalid")
            continue
        value = _CONTROL.sub("", value).strip()
        if f.type != "text":
            value = " ".join(value.split())
        if not value:
            if f.required:
                errors[f.name] = form_text(language, "required")
            continue
        if len(value) > MAX_LENGTHS[f.type]:
            errors[f.name] = form_text(language, "too_long", max=MAX_LENGTHS[f.type])
            continue
        if f.type == "email":
            try:
                _email_validator(value)
            except ValidationError:
                errors[f.name] = form_text(language, "email")
                continue
        elif f.type == "phone":
            digits = sum(ch.isdigit() for ch in value)
            if not _PHONE_CHARS.match(value) or not 7 <= digits <= 15 or "+" in value[1:]:
                errors[f.name] = form_text(language, "phone")
                continue
        elif f.type == "select" and value not in f.options:
            errors[f.name] = form_text(language, "select")
            continue
        clean[f.name] = value
    return clean, errors
