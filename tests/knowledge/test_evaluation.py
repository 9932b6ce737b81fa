"""Evaluation files and `manage.py evaluate_retrieval` on a small knowledge base (the figures on the evaluation
set are checked in test_retrieval.py, which ingests it once)."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from knowledge.evaluation import (
    QuestionFileError,
    conversations_evaluate,
    conversations_load,
    questions_load,
)
from knowledge.services import source_add_file, source_ingest

EVAL_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "eval"

pytestmark = pytest.mark.django_db

GUIDE = b"""# Kettle guide

## Descaling

Descale the kettle once a month with a cup of white vinegar and a cup of water.

## Warranty

Every kettle has a two-year warranty from the day of delivery.
"""


def _write(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_the_conversation_set_loads_with_enough_follow_ups_of_two_and_three_turns():
    conversations = conversations_load(EVAL_DIR / "conversations.jsonl")

    assert sum(len(c.turns) == 2 for c in conversations) >= 30
    assert sum(len(c.turns) == 3 for c in conversations) >= 6
    assert all(c.first_expected and c.standalone for c in conversations)


def test_every_expected_phrase_of_both_sets_is_in_the_corpus():
    corpus = re.sub(r"\s+", " ", " ".join(p.read_text() for p in (EVAL_DIR / "corpus").glob("*.md"))).lower()

    def present(phrase: str) -> bool:
        return re.sub(r"\s+", " ", phrase).strip().lower() in corpus

    for conversation in conversations_load(EVAL_DIR / "conversations.jsonl"):
        assert all(present(p) for p in conversation.expected + conversation.first_expected), conversation.turns
    for question in questions_load(EVAL_DIR / "questions.jsonl"):
        assert all(present(p) for p in question.expected), question.question


@pytest.mark.parametrize(
    "line, complaint",
    [
        ({"turns": ["only one"], "expected": ["x"]}, "at least two"),
        ({"turns": ["a", "b"], "expected": []}, "'expected' must be a non-empty list"),
        ({"turns": ["a", "b"], "expected": ["x"], "first_expected": "x"}, "'first_expected'"),
        ({"turns": ["a", "b"], "expected": ["x"], "standalone": 3}, "'standalone' must be text"),
        ({"expected": ["x"]}, "turns"),
        ("not json", "expected {"),
    ],
)
def test_it_says_which_line_of_a_conversation_file_is_wrong(tmp_path, line, complaint):
    path = _write(tmp_path, [{"turns": ["a", "b"], "expected": ["x"]}, line])

    with pytest.raises(QuestionFileError, match=re.escape(complaint)) as raised:
        conversations_load(path)

    assert f"{path}:2:" in str(raised.value)


def test_it_replays_a_conversation_and_scores_its_first_and_last_turns(bot, tmp_path):
    source_ingest(source=source_add_file(knowledge_base=bot.knowledge_base, filename="guide.md", data=GUIDE))
    path = _write(
        tmp_path,
        [
            {
                "turns": ["my kettle is full of limescale", "how often should I do that?"],
                "expected": ["once a month with a cup of white vinegar"],
                "first_expected": ["Descale the kettle"],
            },
            {"turns": ["how do I descale it?", "and the guarantee?"], "expected": ["two-year warranty"]},
        ],
    )

    result = conversations_evaluate(
        knowledge_base_id=bot.knowledge_base_id, conversations=conversations_load(path), k=1
    )

    assert (result.recall_at_k, result.n) == (1.0, 2)
    assert (result.first_question.recall_at_k, result.first_question.n) == (1.0, 1)
    assert sum(result.contexts.values()) == 2
    assert {"recall_at_k", "mrr", "n", "p50_ms", "p95_ms", "first_question", "contexts"} <= set(result.as_json())


def test_the_command_evaluates_a_conversation_file(bot, tmp_path):
    source_ingest(source=source_add_file(knowledge_base=bot.knowledge_base, filename="guide.md", data=GUIDE))
    path = _write(
        tmp_path,
        [{"turns": ["how do I descale my kettle?", "and how long is it guaranteed?"], "expected": ["two-year"]}],
    )
    out = StringIO()

    call_command(
        "evaluate_retrieval", "--bot", bot.slug, "--conversations", str(path), "--k", "2", "--json", stdout=out
    )

    figures = json.loads(out.getvalue())
    assert (figures["recall_at_k"], figures["n"], figures["k"]) == (1.0, 1, 2)
    assert figures["first_question"] is None  # no first_expected in this file
    with pytest.raises(CommandError, match="either"):
        call_command("evaluate_retrieval", "--bot", bot.slug, str(path), "--conversations", str(path))
