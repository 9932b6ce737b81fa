"""A bot's whole configuration as one JSON document (docs/bot-config.md): its settings, lead form, approved answers
and the list of its knowledge sources, never a secret. For versioning, review and moving bots between instances.

Importing one goes through the dashboard's own settings form (chatbot.bots.forms.BotForm), so a file can set
nothing the dashboard would refuse, and `bot_config_plan` shows what would change before anything is applied.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from chatbot.answers.approved import approved_answer_add
from chatbot.bots.forms import BotForm
from chatbot.bots.services import bot_create
from chatbot.bots.sources import source_add_and_ingest
from chatbot.chat.handoff import business_hours_validate
from chatbot.models import Bot
from knowledge.models import Source

FORMAT = "parley.bot"
VERSION = 1

# Exported settings, in the document's order. Deliberately not: crm_webhook_secret and model_api_key (secrets),
# public_id (the instance's address for the widget), the knowledge base (its sources are listed instead).
SETTINGS = [
    "name", "persona", "greeting", "color", "avatar_url", "language", "allowed_origins", "model_endpoint",
    "adapter_id", "temperature", "top_p", "max_new_tokens", "max_passages", "stop_sequences", "seed",
    "strict_mode", "business_hours", "lead_form", "notification_email", "crm_webhook_url", "lead_retention_days",
    "conversation_retention_days",
]  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "persona": (str,), "greeting": (str,), "color": (str,), "avatar_url": (str,), "language": (str,),
    "allowed_origins": (list,), "model_endpoint": (str,), "adapter_id": (str,), "temperature": (int, float),
    "top_p": (int, float, type(None)), "max_new_tokens": (int,), "max_passages": (int,),
    "stop_sequences": (list,),
    "seed": (int, type(None)), "strict_mode": (bool,), "business_hours": (dict,), "lead_form": (dict,),
    "notification_email": (str,), "crm_webhook_url": (str,), "lead_retention_days": (int,),
    "conversation_retention_days": (int, type(None)),
}  # fmt: skip
SOURCE_FIELDS = {
    Source.Kind.URL: ["url", "title", "resync_every_hours", "same_host_only", "max_pages"],
    Source.Kind.SITEMAP: ["url", "title", "resync_every_hours", "same_host_only", "max_pages"],
    Source.Kind.FAQ: ["question", "answer"],
    Source.Kind.FILE: ["title"],
    Source.Kind.SITE: [
        "url",
        "title",
        "resync_every_hours",
        "max_pages",
        "max_depth",
        "include_patterns",
        "exclude_patterns",
    ],
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
    passages = bot.get("max_passages")
    if isinstance(passages, int) and not isinstance(passages, bool) and not 1 <= passages <= 20:
        problems.append('"bot.max_passages" must be between 1 and 20.')
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
        elif source["kind"] in (Source.Kind.URL, Source.Kind.SITEMAP, Source.Kind.SITE) and not str(
            source.get("url", "")
        ).startswith(("http://", "https://")):
            problems.append(f"sources[{index}] needs an http(s) url.")
        elif source["kind"] == Source.Kind.SITE:
            problems += _site_problems(source, index=index)
        elif source["kind"] == Source.Kind.FAQ and not (source.get("question") and source.get("answer")):
            problems.append(f"sources[{index}] needs a question and an answer.")
    return problems


def _site_problems(source: dict, *, index: int) -> list[str]:
    problems = []
    for name, least in (("max_pages", 1), ("max_depth", 0)):
        value = source.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            problems.append(f"sources[{index}].{name} must be a whole number of at least {least}.")
    for name in ("include_patterns", "exclude_patterns"):
        value = source.get(name, [])
        if not isinstance(value, list) or not all(isinstance(pattern, str) for pattern in value):
            problems.append(f'sources[{index}].{name} must be a list of path patterns such as "/docs/*".')
    return problems


@dataclass
class ImportPlan:
    """What importing a document would do, computed without writing anything."""

    slug: str
    bot: Bot | None  # the bot it would update; None: a new bot
    problems: list[str] = field(default_factory=list)
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)  # (setting, now, after)
    approved_answers: list[dict] = field(default_factory=list)  # to add
    sources: list[dict] = field(default_factory=list)  # to add and ingest
    files_to_upload: list[str] = field(default_factory=list)
    form: BotForm | None = None

    @property
    def created(self) -> bool:
        return self.bot is None


def _form_value(value: Any) -> Any:
    """A setting as the dashboard's form posts it."""
    if isinstance(value, bool):
        return "on" if value else ""
    if isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value) if value else ""
    return "" if value is None else str(value)


def _form_data(*, settings: dict, bot: Bot | None, slug: str) -> dict:
    """The form's data: the bot's current settings (a new bot's defaults), with the document's over them."""
    current = bot if bot is not None else Bot()
    data = {name: _form_value(getattr(current, name)) for name in SETTINGS}
    data.update({name: _form_value(value) for name, value in settings.items()})
    data["slug"] = slug
    if not data["strict_mode"]:
        del data["strict_mode"]  # an unticked box is not posted
    return data


def bot_config_plan(*, document: Any, slug: str | None = None) -> ImportPlan:
    """Every problem with the document, or what importing it would change: the settings (old and new value), the
    approved answers and sources it would add, the files to upload again. Nothing is written."""
    problems = bot_config_validate(document)
    if problems:
        return ImportPlan(slug=slug or "", bot=None, problems=problems)
    slug = slug or document["bot"]["slug"]
    bot = Bot.objects.filter(slug=slug).first()
    settings = {name: value for name, value in document["bot"].items() if name in SETTINGS}
    # Read before validating: a model form writes what it cleaned onto its instance.
    before = {name: getattr(bot, name) for name in SETTINGS} if bot is not None else {}
    saved_key = bot.model_api_key if bot is not None else ""
    form = BotForm(data=_form_data(settings=settings, bot=bot, slug=slug), instance=bot)
    plan = ImportPlan(slug=slug, bot=bot, form=form)
    if not form.is_valid():
        plan.problems = [
            f"bot.{name}: {message}" if name != "__all__" else message
            for name, messages in form.errors.items()
            for message in messages
        ]
        return plan
    for name in SETTINGS:
        now = before.get(name)
        after = form.cleaned_data.get(name)
        if bot is None or now != after:
            if bot is None and after in ("", None, [], {}):
                continue
            plan.changes.append((name, now, after))
    if saved_key and not form.api_key:
        plan.changes.append(("model_api_key", "(saved key)", "(removed: the endpoint changed)"))
    known_questions = set(bot.approved_answers.values_list("question", flat=True)) if bot is not None else set()
    for answer in document.get("approved_answers", []):
        if answer["question"].strip() not in known_questions:
            known_questions.add(answer["question"].strip())
            plan.approved_answers.append(answer)
    existing = bot.knowledge_base.sources.all() if bot is not None and bot.knowledge_base_id is not None else []
    known_urls = {(s.kind, s.url) for s in existing if s.url}
    known_faqs = {s.question for s in existing if s.kind == Source.Kind.FAQ}
    for source in document.get("sources", []):
        kind = source["kind"]
        if kind == Source.Kind.FILE:
            plan.files_to_upload.append(source.get("filename") or source.get("title") or "an uploaded file")
        elif (kind == Source.Kind.FAQ and source["question"] not in known_faqs) or (
            kind != Source.Kind.FAQ and (kind, source["url"]) not in known_urls
        ):
            plan.sources.append(source)
    return plan


@transaction.atomic
def bot_config_import(*, document: Any, slug: str | None = None, user=None) -> ImportReport:
    """Create the bot, or update the one with the same slug (or `slug`): its settings are replaced through the
    dashboard's form; approved answers and sources missing from it are added (nothing is deleted). Web and FAQ
    sources are queued for ingestion; uploaded files are listed in the report to upload again (the file holds no
    document content)."""
    plan = bot_config_plan(document=document, slug=slug)
    if plan.problems:
        raise BotConfigError(plan.problems)
    if plan.created:
        fields = {name: value for name, value in plan.form.bot_fields().items() if name not in ("slug", "name")}
        bot = bot_create(slug=plan.slug, name=plan.form.cleaned_data["name"], **fields)
    else:
        bot = plan.form.save()
    report = ImportReport(bot=bot, created=plan.created, sources_skipped=plan.files_to_upload)
    for answer in plan.approved_answers:
        approved_answer_add(bot=bot, question=answer["question"], answer=answer["answer"], user=user, add_faq=False)
        report.approved_answers_added += 1
    if bot.knowledge_base_id is not None:
        for source in plan.sources:
            kind = source["kind"]
            if kind == Source.Kind.FAQ:
                source_add_and_ingest(bot=bot, kind=kind, question=source["question"], answer=source["answer"])
            else:
                source_add_and_ingest(
                    bot=bot,
                    kind=kind,
                    url=source["url"],
                    **{name: source.get(name) for name in SOURCE_FIELDS[kind] if name != "url"},
                )
            report.sources_added += 1
    return report
