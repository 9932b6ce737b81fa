"""A bot's whole configuration as one JSON document (docs/bot-config.md): its settings, lead form, approved answers
and the list of its knowledge sources, never a secret. For versioning, review and moving bots between instances.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from chatbot.answers.approved import approved_answer_add
from chatbot.bots.services import bot_create
from chatbot.bots.sources import source_add_and_ingest
from chatbot.chat.handoff import business_hours_validate
from chatbot.models import Bot
from knowledge.models import Source

FORMAT = "parley.bot"
VERSION = 1

# Exported settings, in the document's order. Deliberately not: crm_webhook_secret (a secret), public_id (the
# instance's address for the widget), the knowledge base (its sources are listed instead).
SETTINGS = [
    "name", "persona", "greeting", "color", "avatar_url", "language", "allowed_origins", "model_endpoint",
    "adapter_id", "temperature", "top_p", "max_new_tokens", "stop_sequences", "seed", "strict_mode",
    "business_hours", "lead_form", "notification_email", "crm_webhook_url", "lead_retention_days",
    "conversation_retention_days",
]  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "persona": (str,), "greeting": (str,), "color": (str,), "avatar_url": (str,), "language": (str,),
    "allowed_origins": (list,), "model_endpoint": (str,), "adapter_id": (str,), "temperature": (int, float),
    "top_p": (int, float, type(None)), "max_new_tokens": (int,), "stop_sequences": (list,),
    "seed": (int, type(None)), "strict_mode": (bool,), "business_hours": (dict,), "lead_form": (dict,),
    "notification_email": (str,), "crm_webhook_url": (str,), "lead_retention_days": (int,),
    "conversation_retention_days": (int, type(None)),
}  # fmt: skip
SOURCE_FIELDS = {
    Source.Kind.URL: ["url", "title", "resync_every_hours", "same_host_only", "max_pages"],
    Source.Kind.SITEMAP: ["url", "title", "resync_every_hours", "same_host_only", "max_pages"],
    Source.Kind.FAQ: ["question", "answer"],
    Source.Kind.FILE: ["title"],
}


class BotConfigError(ValueError):
    """The document is not a Parley bot configuration this version can read; `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ImportReport:
    bot: Bot
    created: bool
    approved_answers_added: int = 0
    sources_added: int = 0
    sources_skipped: list[str] = field(default_factory=list)


def bot_config_export(*, bot: Bot) -> dict[str, Any]:
    sources = []
    if bot.knowledge_base_id is not None:
        for source in bot.knowledge_base.sources.order_by("created_at", "id"):
            entry: dict[str, Any] = {"kind": source.kind}
            for name in SOURCE_FIELDS[source.kind]:
                entry[name] = getattr(source, name)
            if source.kind == Source.Kind.FILE:
                entry["filename"] = source.file.name.rsplit("/", 1)[-1] if source.file else ""
            sources.append(entry)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(timespec="seconds"),
        "bot": {"slug": bot.slug, **{name: getattr(bot, name) for name in SETTINGS}},
        "approved_answers": [
            {"question": a.question, "answer": a.answer} for a in bot.approved_answers.order_by("created_at", "id")
        ],
        "sources": sources,
    }


def bot_config_validate(document: Any) -> list[str]:
    """Every problem with a document, so a reviewer sees them all at once."""
    if not isinstance(document, dict):
        return ["The file is not a JSON object."]
    if document.get("format") != FORMAT:
        return [f'Not a Parley bot configuration ("format" must be "{FORMAT}").']
    if document.get("version") != VERSION:
        return [f"Unsupported version {document.get('version')!r}: this Parley reads version {VERSION}."]
    problems = []
    bot = document.get("bot")
    if not isinstance(bot, dict):
        return ['"bot" must be an object.']
    slug = bot.get("slug")
    if not isinstance(slug, str) or not slug or slugify(slug) != slug:
        problems.append('"bot.slug" must be a slug (lowercase letters, digits and hyphens).')
    if not isinstance(bot.get("name"), str) or not bot.get("name"):
        problems.append('"bot.name" is required.')
    for name, value in bot.items():
        if name == "slug":
            continue
        if name not in _TYPES:
            problems.append(f'Unknown setting "bot.{name}".')
        elif not isinstance(value, _TYPES[name]) or (isinstance(value, bool) and bool not in _TYPES[name]):
            problems.append(f'"bot.{name}" has the wrong type ({type(value).__name__}).')
    retention = bot.get("conversation_retention_days")
    if isinstance(retention, int) and not isinstance(retention, bool) and retention < 1:
        problems.append('"bot.conversation_retention_days" must be at least 1 day (null keeps conversations).')
    if isinstance(bot.get("business_hours"), dict):
        problems += [f"bot.business_hours: {p}" for p in business_hours_validate(bot["business_hours"])]
    for index, answer in enumerate(document.get("approved_answers", [])):
        if not isinstance(answer, dict) or not all(
            isinstance(answer.get(k), str) and answer[k] for k in ("question", "answer")
        ):
            problems.append(f"approved_answers[{index}] needs a question and an answer.")
    for index, source in enumerate(document.get("sources", [])):
        if not isinstance(source, dict) or source.get("kind") not in SOURCE_FIELDS:
            problems.append(f"sources[{index}] has an unknown kind.")
        elif source["kind"] in (Source.Kind.URL, Source.Kind.SITEMAP) and not str(source.get("url", "")).startswith(
            ("http://", "https://")
        ):
            problems.append(f"sources[{index}] needs an http(s) url.")
        elif source["kind"] == Source.Kind.FAQ and not (source.get("question") and source.get("answer")):
            problems.append(f"sources[{index}] needs a question and an answer.")
    return problems


@transaction.atomic
def bot_config_import(*, document: Any, slug: str | None = None, user=None) -> ImportReport:
    """Create the bot, or update the one with the same slug (or `slug`): its settings are replaced; approved
    answers and sources missing from it are added (nothing is deleted). Web and FAQ sources are queued for
    ingestion; uploaded files are listed in the report to upload again (the file holds no document content)."""
    problems = bot_config_validate(document)
    if problems:
        raise BotConfigError(problems)
    settings = {name: value for name, value in document["bot"].items() if name in SETTINGS}
    slug = slug or document["bot"]["slug"]
    bot = Bot.objects.filter(slug=slug).first()
    created = bot is None
    if created:
        bot = bot_create(slug=slug, **settings)
    else:
        for name, value in settings.items():
            setattr(bot, name, value)
        bot.save(update_fields=[*settings, "updated_at"])
    report = ImportReport(bot=bot, created=created)

    known_questions = set(bot.approved_answers.values_list("question", flat=True))
    for answer in document.get("approved_answers", []):
        if answer["question"].strip() not in known_questions:
            approved_answer_add(bot=bot, question=answer["question"], answer=answer["answer"], user=user, add_faq=False)
            known_questions.add(answer["question"].strip())
            report.approved_answers_added += 1

    if bot.knowledge_base_id is not None:
        existing = bot.knowledge_base.sources.all()
        known_urls = {(s.kind, s.url) for s in existing if s.url}
        known_faqs = {s.question for s in existing if s.kind == Source.Kind.FAQ}
        for source in document.get("sources", []):
            kind = source["kind"]
            if kind == Source.Kind.FILE:
                report.sources_skipped.append(source.get("filename") or source.get("title") or "an uploaded file")
            elif kind == Source.Kind.FAQ:
                if source["question"] not in known_faqs:
                    source_add_and_ingest(bot=bot, kind=kind, question=source["question"], answer=source["answer"])
                    report.sources_added += 1
            elif (kind, source["url"]) not in known_urls:
                source_add_and_ingest(
                    bot=bot,
                    kind=kind,
                    url=source["url"],
                    **{name: source.get(name) for name in SOURCE_FIELDS[kind] if name != "url"},
                )
                report.sources_added += 1
    return report
