"""Reading leads: a bot's leads filtered by day and consent, and the CSV export."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import date
from typing import IO, Any

from django.db.models import QuerySet

from chatbot.leads.form import LeadFormInvalid, language_of, lead_form_parse
from chatbot.models import Bot, Lead


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


def lead_fields_display(*, lead: Lead) -> list[tuple[str, str]]:
    """The lead's form fields for a person to read: (label, value), in the form's order, with the labels of the
    bot's form. Email and name have their own places, consent its text and time: they are not repeated here."""
    try:
        form = lead_form_parse(config=lead.bot.lead_form, language=language_of(bot=lead.bot))
    except LeadFormInvalid:
        form = None
    fields = {f.name: f for f in form.fields} if form else {}
    shown = []
    for name in [*fields, *(key for key in lead.data if key not in fields)]:
        field = fields.get(name)
        if name not in lead.data or name in ("email", "name") or (field and field.type in ("email", "name", "consent")):
            continue
        value = lead.data[name]
        if isinstance(value, bool):
            value = "Yes" if value else "No"
        shown.append((field.label if field else name.replace("_", " ").capitalize(), str(value)))
    return shown


# Digits and phone punctuation only: no function can be called, so "+33 1 23 45 67 89" is written as typed.
_NUMBER_LIKE = re.compile(r"^[+\-]?[0-9 ().\-/]+$")
# A formula start at the beginning of the value, or after anything a spreadsheet may split cells on (a comma, a
# semicolon in a semicolon locale, a tab, a pipe, a line break), spaces allowed before it.
_FORMULA_START = re.compile(r"(^|[,;\t|\r\n])([ ]*)([=+\-@\t\r])")


def _csv_safe(value: Any) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: a visitor could type one into the form, and
    `x;=cmd|' /C calc'!A0` becomes a formula cell in a semicolon-separated import. Each start gets an apostrophe."""
    text = "" if value is None else str(value)
    if _NUMBER_LIKE.match(text):
        return text
    return _FORMULA_START.sub(lambda m: f"{m.group(1)}{m.group(2)}'{m.group(3)}", text)


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
    # Every field quoted: an importer splitting on another separator (";" in many locales) keeps each one whole.
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
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
