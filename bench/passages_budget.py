"""How often the passage that answers reaches the model's prompt: 5 fixed passages against `passages_choose`.

For each question of questions.jsonl and each conversation of conversations.jsonl (replayed turn by turn with
`conversation_search`), search for 8 passages, choose with `knowledge.passages.passages_choose`, then fit them into
the prompt of a model with `--context` tokens and `--new-tokens` for the answer, with inference's own budget
(`inference.budget.build_prompt`, counting with its conservative `estimate_tokens`, a persona as long as the demo
bot's and, for conversations, the earlier turns as history with a 60-word answer each). Reports the share of
questions whose answering passage is in the prompt, how many passages were sent and why the others were cut.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.passages_budget --bot evalset
    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.passages_budget --bot evalset --context 2048
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT / "tests" / "fixtures" / "eval"
OFF_TOPIC = [
    "Which wine goes best with grilled salmon?",
    "Can I pay with PayPal?",
    "How do I reset my router?",
    "Who won the football world cup in 2018?",
    "What's the weather like in Oslo tomorrow?",
    "Do you deliver pizza?",
    "How tall is the Eiffel tower?",
    "Recommend me a good novel",
    "How do I bake sourdough bread?",
    "What are your opening hours on Sunday?",
]
FILLER_ANSWER = " ".join(["word"] * 60)
# About the length of the demo bot's persona.
PERSONA = (
    "You are the documentation assistant of a software project. You help people evaluate, install and run it. "
    "Answer briefly and precisely from the passages, cite them, and say so when they do not answer the question."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", required=True, help="slug of a bot whose knowledge base holds the ingested corpus")
    parser.add_argument("--context", type=int, default=8192, help="the model's context (max_total_tokens)")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--max-passages", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from chatbot.ops.embedded import configure_environment

    configure_environment()
    import django

    django.setup()
    from chatbot.models import Bot
    from inference.budget import build_prompt
    from inference.client import ModelInfo, estimate_tokens
    from inference.prompts import Passage, Turn
    from knowledge.conversation import conversation_search
    from knowledge.evaluation import conversations_load, questions_load, relevant_rank
    from knowledge.passages import passages_choose
    from knowledge.retrieval import chunk_search

    knowledge_base_id = Bot.objects.get(slug=arguments.bot).knowledge_base_id
    persona = PERSONA
    info = ModelInfo(model_id="llama", max_input_tokens=arguments.context - 1, max_total_tokens=arguments.context)

    def in_prompt(chunks, history):
        passages = [
            Passage(n=n, title=c.title, url=c.url, text=c.text, heading_path=" › ".join(c.heading_path))
            for n, c in enumerate(chunks, start=1)
        ]
        built = build_prompt(
            persona=persona,
            passages=passages,
            history=history,
            question="x",
            model_info=info,
            count_tokens=estimate_tokens,
            max_new_tokens=arguments.new_tokens,
        )
        kept = {(p.title, p.heading_path, p.text) for p in built.passages_used}
        return [c for c in chunks if (c.title, " › ".join(c.heading_path), c.text) in kept]

    def measure(cases):
        """cases: (chunks best first, expected, history)."""
        fixed_hits = rule_hits = 0
        sent_counts, reasons = [], Counter()
        for chunks, expected, history in cases:
            fixed = in_prompt(chunks[:5], history)
            choice = passages_choose(chunks=chunks, max_passages=arguments.max_passages)
            fitted = in_prompt(choice.sent, history)
            fitted_ids = {c.chunk_id for c in fitted}
            choice = choice.over_budget([c.chunk_id for c in choice.sent if c.chunk_id not in fitted_ids])
            fixed_hits += relevant_rank(chunks=fixed, expected=expected) is not None
            rule_hits += relevant_rank(chunks=choice.sent, expected=expected) is not None
            sent_counts.append(len(choice.sent))
            reasons.update(decision.cut for decision in choice.cut)
        n = len(cases)
        return {
            "n": n,
            "fixed_5_in_prompt": round(fixed_hits / n, 3),
            "rule_in_prompt": round(rule_hits / n, 3),
            "passages_sent_mean": round(statistics.fmean(sent_counts), 2),
            "passages_sent_min_max": [min(sent_counts), max(sent_counts)],
            "cut": dict(reasons),
        }

    questions = questions_load(EVAL_DIR / "questions.jsonl")
    question_cases = [
        (chunk_search(knowledge_base_id=knowledge_base_id, query=q.question, k=8).chunks, q.expected, [])
        for q in questions
    ]
    conversation_cases = []
    for conversation in conversations_load(EVAL_DIR / "conversations.jsonl"):
        previous, history = [], []
        for turn, question in enumerate(conversation.turns):
            result = conversation_search(
                knowledge_base_id=knowledge_base_id,
                question=question,
                history=conversation.turns[:turn],
                previous_chunk_ids=previous,
                k=8,
            )
            previous = [chunk.chunk_id for chunk in result.chunks]
            if turn < len(conversation.turns) - 1:
                history += [Turn(role="user", text=question), Turn(role="assistant", text=FILLER_ANSWER)]
        conversation_cases.append((result.chunks, conversation.expected, history))
    off_topic = [
        len(passages_choose(chunks=chunk_search(knowledge_base_id=knowledge_base_id, query=q, k=8).chunks).sent)
        for q in OFF_TOPIC
    ]
    figures = {
        "model": {"context": arguments.context, "new_tokens": arguments.new_tokens},
        "questions": measure(question_cases),
        "follow_ups": measure(conversation_cases),
        "off_topic_passages_sent": off_topic,
    }
    print(json.dumps(figures, indent=2))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
