"""A visitor asking for a person: recognising the wish in what they type, deciding whether anyone can come (staff
online, within business hours), telling the dashboards with a short summary of the conversation."""

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from chatbot.chat.conversations import conversation_request_handoff
from chatbot.chat.staff_feed import dashboard_handoff_notify
from chatbot.chat.tasks import handoff_email_after_commit
from chatbot.models import Conversation, Message
from chatbot.realtime.limits import once_per
from chatbot.realtime.presence import staff_online
from chatbot.realtime.protocol import HandoffStatus
from chatbot.webhooks.events import handoff_requested_emit

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_NOUN = (
    r"(humans?|persons?|someone|somebody|agents?|representatives?|reps?|operators?|staff|managers?|"
    r"advis[eo]rs?|employees?|team members?|member of (your|the) team|support|customer (service|support|care)|"
    r"sales( team)?)"
)
# Words that may stand between "talk to" and the person: "talk to one of your real human agents".
_FILLER = r"(?:(?:a|an|the|your|some|real|live|actual|one|of|from|support|customer|service|sales|human|proper)\s+){0,5}"
_HUMAN_PATTERNS = [
    # English
    re.compile(rf"\b(talk|speak|chat|communicate)\s+(to|with)\s+{_FILLER}{_NOUN}\b"),
    re.compile(rf"\b(get|put|transfer|connect|pass|escalate)\s+me\s+(to|with|through to)?\s*{_FILLER}{_NOUN}\b"),
    re.compile(r"\b(real|live|actual)\s+(human|person|agent|people)\b"),
    re.compile(
        r"\b(want|need|like|can i (have|get)|give me)\s+(to\s+)?(a|an|some)?\s*(human|agent|operator|representative)\b"
    ),
    re.compile(r"^(a\s+)?(human|agent|operator|representative|person)(\s+(please|pls|now))?$"),
    # French
    re.compile(
        r"\b(parler|discuter|echanger)\s+(a|avec)\s+(un|une|quelqu un|des)?\s*"
        r"(humain|personne|conseiller|conseillere|agent|operateur|operatrice|vrai|vraie|quelqu un|membre)"
    ),
    re.compile(r"\b(un|une)\s+(vrai|vraie)\s+(humain|personne)\b"),
    # German
    re.compile(
        r"\b(mensch|menschen|mitarbeiter(in)?|berater(in)?|person|jemandem)\b.{0,30}\b(sprechen|reden|chatten)\b"
    ),
    re.compile(r"\b(sprechen|reden)\b.{0,20}\bmit\s+(einem|einer)\s+(mensch|menschen|mitarbeiter(in)?|berater(in)?)\b"),
]
# A negation shortly before the wish undoes it: "I don't want to talk to a human".
_NEGATION = re.compile(
    r"\b(don t|dont|do not|no need|not|never|ne veux pas|pas besoin|nicht|kein|keinen)(\s+\w+){0,3}\s*$"
)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def human_requested(text: str) -> bool:
    """Whether a visitor's message asks for a person ("can I talk to a human?", "agent please", "parler à un
    conseiller"), not just mentions one. Plain patterns: predictable, testable, and fast on every message."""
    normal = _normalise(text)
    if not normal or len(normal) > 300:
        return False
    for pattern in _HUMAN_PATTERNS:
        match = pattern.search(normal)
        if match and not _NEGATION.search(normal[: match.start()]):
            return True
    return False


# --- business hours ---


def _ranges(value) -> list[tuple[str, str]]:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return [(value[0], value[1])]
    if isinstance(value, list):
        return [tuple(v) for v in value if isinstance(v, list) and len(v) == 2]
    return []


def business_hours_validate(hours) -> list[str]:
    """Problems with a bot's business hours: {"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"],
    "tue": [["09:00", "12:00"], ["14:00", "18:00"]], ...}}; an empty object means always open."""
    if hours in ({}, None):
        return []
    if not isinstance(hours, dict):
        return ["Business hours must be a JSON object."]
    errors = []
    unknown = set(hours) - {"timezone", "days"}
    if unknown:
        errors.append(f"Unknown keys: {', '.join(sorted(unknown))}.")
    try:
        ZoneInfo(str(hours.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"Unknown time zone {hours.get('timezone')!r}.")
    days = hours.get("days", {})
    if not isinstance(days, dict):
        return [*errors, '"days" must be an object such as {"mon": ["09:00", "18:00"]}.']
    for day, value in days.items():
        if day not in DAYS:
            errors.append(f"Unknown day {day!r}: use {', '.join(DAYS)}.")
            continue
        ranges = _ranges(value)
        if not ranges and value not in ([], None):
            errors.append(f'{day}: give ["HH:MM", "HH:MM"] or a list of such pairs.')
        for start, end in ranges:
            try:
                if time.fromisoformat(start) >= time.fromisoformat(end):
                    errors.append(f"{day}: {start} is not before {end}.")
            except ValueError:
                errors.append(f"{day}: {start!r}–{end!r} are not HH:MM times.")
    return errors


def business_hours_open(*, hours: dict, now: datetime | None = None) -> bool:
    """Whether `now` is within the hours; empty hours mean always open, a day left out is closed."""
    if not hours or not hours.get("days"):
        return True
    if business_hours_validate(hours):
        return True  # a broken setting must not hide the team; the form refuses to save one anyway
    local = (now or timezone.now()).astimezone(ZoneInfo(hours.get("timezone") or "UTC"))
    for start, end in _ranges(hours["days"].get(DAYS[local.weekday()])):
        if time.fromisoformat(start) <= local.time().replace(tzinfo=None) < time.fromisoformat(end):
            return True
    return False


# --- the request ---

MESSAGES = {
    "requested": {
        "en": "We've let the team know. Someone will join this conversation shortly.",
        "fr": "Nous avons prévenu l'équipe. Quelqu'un va rejoindre cette conversation sous peu.",
        "de": "Wir haben das Team informiert. Gleich meldet sich jemand in diesem Gespräch.",
    },
    "unavailable": {
        "en": "Nobody from the team is available right now. Leave your details and we'll get back to you.",
        "fr": (
            "Personne de l'équipe n'est disponible pour le moment. Laissez vos coordonnées et nous vous recontacterons."
        ),
        "de": "Gerade ist niemand aus dem Team erreichbar. Hinterlassen Sie Ihre Kontaktdaten, wir melden uns.",
    },
}


@dataclass(frozen=True)
class HandoffOutcome:
    status: HandoffStatus
    message: str


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def conversation_summary(*, conversation: Conversation) -> str:
    """A few lines for the staff member who picks the conversation up: what the visitor asked first and last, and
    how the bot did. Extractive (no model call): it must be there at once and never be wrong."""
    messages = list(conversation.messages.order_by("created_at", "id").only("role", "text", "status", "feedback"))
    asked = [m.text for m in messages if m.role == Message.Role.VISITOR and not human_requested(m.text)]
    answers = [m for m in messages if m.role == Message.Role.BOT]
    parts = []
    if asked:
        parts.append(f"Asked: “{_clip(asked[0], 120)}”")
        if len(asked) > 1:
            parts.append(f"latest: “{_clip(asked[-1], 120)}”")
    else:
        parts.append("Asked for a person straight away")
    weak = sum(
        1
        for m in answers
        if m.status in (Message.Status.RETRIEVAL_ONLY, Message.Status.ERROR) or m.feedback == Message.Feedback.DOWN
    )
    parts.append(f"{len(asked)} question(s), {len(answers)} bot answer(s)" + (f", {weak} unhelpful" if weak else ""))
    if conversation.page_url:
        parts.append(f"on {conversation.page_url}")
    return "; ".join(parts) + "."


def staff_available(*, conversation: Conversation) -> bool:
    bot = conversation.bot
    return business_hours_open(hours=bot.business_hours) and staff_online(bot_id=bot.id) > 0


def handoff_request(*, conversation: Conversation) -> HandoffOutcome:
    """Record the visitor's wish for a person and tell the dashboards at once. "requested" when someone can come
    (staff online, within business hours); otherwise "unavailable", and the widget offers the lead form."""
    conversation = Conversation.objects.select_related("bot").get(pk=conversation.pk)
    first_request = conversation.handoff_requested_at is None
    conversation_request_handoff(conversation=conversation)
    if conversation.taken_over_by_id is not None:
        status = "requested"
    else:
        status = "requested" if staff_available(conversation=conversation) else "unavailable"
    summary = conversation_summary(conversation=conversation)
    # Every dashboard (and every subscriber) alerts on this: once per conversation per HANDOFF_ALERT_INTERVAL_S,
    # however often it is asked.
    if once_per(scope="handoff-alert", identity=conversation.id, interval_s=settings.HANDOFF_ALERT_INTERVAL_S):
        dashboard_handoff_notify(conversation=conversation, status=status, summary=summary)
        handoff_requested_emit(conversation=conversation, status=status, summary=summary)
    if first_request and conversation.taken_over_by_id is None:
        handoff_email_after_commit(conversation_id=conversation.id, summary=summary)
    language = (conversation.language or conversation.bot.language or "en").split("-")[0]
    return HandoffOutcome(status=status, message=MESSAGES[status].get(language, MESSAGES[status]["en"]))
