import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chatbot.models import Bot
from knowledge.evaluation import QuestionFileError, evaluation_file_run


class Command(BaseCommand):
    help = "Measure retrieval on a JSONL question set: recall@k, MRR and search latency."

    def add_arguments(self, parser):
        parser.add_argument("--bot", required=True, help="The bot's slug.")
        parser.add_argument("questions", metavar="QUESTIONS.jsonl", nargs="?")
        parser.add_argument("--conversations", metavar="FILE.jsonl", help="Score the last turns of conversations.")
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--mode", choices=["hybrid", "vector", "text"], default="hybrid")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument("--show-misses", action="store_true")

    def handle(self, *args, bot, questions, conversations, k: int, mode: str, json: bool, show_misses: bool, **options):
        found = Bot.objects.filter(slug=bot).first()
        if found is None or found.knowledge_base_id is None:
            raise CommandError(f"no bot with the slug '{bot}' and a knowledge base")
        if k < 1:
            raise CommandError("--k must be at least 1")
        if (questions is None) == (conversations is None):
            raise CommandError("give either QUESTIONS.jsonl or --conversations FILE.jsonl")
        path = Path(questions or conversations)
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            result = evaluation_file_run(
                knowledge_base_id=found.knowledge_base_id, path=path, conversations=bool(conversations), k=k, mode=mode
            )
        except QuestionFileError as error:
            raise CommandError(str(error)) from None
        if json:
            self.stdout.write(_json_dumps(result.as_json()))
            return
        self.stdout.write(f"questions: {result.n}  mode: {result.mode}")
        self.stdout.write(f"recall@{k}: {result.recall_at_k:.3f}")
        self.stdout.write(f"MRR: {result.mrr:.3f}")
        self.stdout.write(f"search latency p50: {result.p50_ms:.1f} ms  p95: {result.p95_ms:.1f} ms")
        if getattr(result, "first_question", None):
            self.stdout.write(f"first questions alone: recall@{k} {result.first_question.recall_at_k:.3f}")
        if show_misses:
            for question in result.misses:
                self.stdout.write(f"missed: {question}")


def _json_dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
