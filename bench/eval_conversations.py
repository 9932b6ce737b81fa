"""Compare ways of searching a conversation's last turn, on tests/fixtures/eval/conversations.jsonl.

Every variant runs through `knowledge.evaluation.conversations_evaluate` on the ingested evaluation corpus (see
docs/retrieval.md for the ingestion commands), so the figures are the real pipeline's. Two sets:

- **follow-ups**: the conversations file; the last turn only makes sense with the earlier ones.
- **topic switches**: each question of questions.jsonl asked after an unrelated first turn (the first turn of a
  conversation about another module, chosen with a fixed seed). Context must not hurt these.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.eval_conversations --bot evalset
    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.eval_conversations --bot evalset \
        --variants "default: mix 0.3, focus 0.2 if margin > -0.02" "plain (last turn alone)"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT / "tests" / "fixtures" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", required=True, help="slug of a bot whose knowledge base holds the ingested corpus")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--variants", nargs="+", help="names of the variants to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from chatbot.ops.embedded import configure_environment

    configure_environment()
    import django

    django.setup()
    from chatbot.models import Bot
    from knowledge.evaluation import conversations_evaluate, conversations_load, questions_load

    knowledge_base_id = Bot.objects.get(slug=arguments.bot).knowledge_base_id
    conversations = conversations_load(EVAL_DIR / "conversations.jsonl")
    switches = _topic_switches(conversations, questions_load(EVAL_DIR / "questions.jsonl"))
    variants = _variants(conversations)
    chosen = arguments.variants or list(variants)
    unknown = set(chosen) - set(variants)
    if unknown:
        sys.exit(f"unknown variants: {', '.join(sorted(unknown))}; known: {', '.join(variants)}")

    print(f"{'variant':<34} {'follow-ups R@5':>14} {'MRR':>6} {'R@8':>6} {'topic switches R@5':>19} {'MRR':>6}")
    figures = {}
    for name in chosen:
        retriever = variants[name]
        row = {}
        for label, data in (("follow_ups", conversations), ("topic_switches", switches)):
            # One run at k=8; the top k of it are what a search for k returns (no reranker here).
            result = conversations_evaluate(
                knowledge_base_id=knowledge_base_id, conversations=data, k=8, retriever=retriever
            )
            row[label] = {
                **_at(result.ranks, arguments.k),
                "recall_at_8": result.recall_at_k,
                "contexts": result.contexts,
                "search_p50_ms": result.search_p50_ms,
                "search_p95_ms": result.search_p95_ms,
                "embed_p50_ms": result.embed_p50_ms,
                "first_question": _at(result.first_question.ranks, arguments.k) if result.first_question else None,
            }
        figures[name] = row
        follow, switch = row["follow_ups"], row["topic_switches"]
        print(
            f"{name:<34} {follow['recall_at_k']:>14.3f} {follow['mrr']:>6.3f} {follow['recall_at_8']:>6.3f}"
            f" {switch['recall_at_k']:>19.3f} {switch['mrr']:>6.3f}",
            flush=True,
        )
    first = figures[chosen[0]]["follow_ups"]["first_question"]
    print(f"first questions alone (same conversations): recall@{arguments.k} {first['recall_at_k']:.3f}")
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2, sort_keys=True), encoding="utf-8")


def _at(ranks: list[int | None], k: int) -> dict[str, float]:
    return {
        "recall_at_k": sum(1 for rank in ranks if rank and rank <= k) / len(ranks),
        "mrr": sum(1 / rank for rank in ranks if rank and rank <= k) / len(ranks),
        "n": len(ranks),
    }


def _topic_switches(conversations, questions):
    """Each question after the first turn of a conversation whose first passage is about another module."""
    from knowledge.evaluation import EvaluationConversation

    rng = random.Random(7)
    openers = [c for c in conversations if c.first_expected]
    switched = []
    for question in questions:
        module = _module_of(question.expected)
        while True:
            opener = rng.choice(openers)
            if _module_of(opener.first_expected) != module:
                break
        switched.append(EvaluationConversation(turns=[opener.turns[0], question.question], expected=question.expected))
    return switched


_CORPUS: dict[str, str] | None = None


def _module_of(expected: list[str]) -> str | None:
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = {
            path.stem: " ".join(path.read_text(encoding="utf-8").split()).lower()
            for path in (EVAL_DIR / "corpus").glob("*.md")
        }
    phrases = [" ".join(phrase.split()).lower() for phrase in expected]
    return next((module for module, text in _CORPUS.items() if any(p in text for p in phrases)), None)


def _variants(conversations):
    from knowledge import conversation
    from knowledge.conversation import conversation_search
    from knowledge.retrieval import chunk_search

    standalone = {tuple(c.turns): c.standalone for c in conversations if c.standalone}

    def plain(*, knowledge_base_id, question, history, previous_chunk_ids, k, mode):
        return chunk_search(knowledge_base_id=knowledge_base_id, query=question, k=k, mode=mode)

    def concatenation(*, knowledge_base_id, question, history, previous_chunk_ids, k, mode):
        query = " ".join([*history[-conversation.CONTEXT_TURNS :], question])
        return chunk_search(knowledge_base_id=knowledge_base_id, query=query, k=k, mode=mode)

    def tuned(**settings):
        """conversation_search with other values of its constants."""

        def search(**arguments):
            saved = {name: getattr(conversation, name) for name in settings}
            try:
                for name, value in settings.items():
                    setattr(conversation, name, value)
                return conversation_search(**arguments)
            finally:
                for name, value in saved.items():
                    setattr(conversation, name, value)

        return search

    def always(**settings):
        # Similarities differ by at most 2: every question with history counts as a follow-up.
        return tuned(DEPENDENCE_MARGIN=-2.0, **settings)

    def fused(first, second, *, rrf_k=60):
        def search(*, k, **arguments):
            a, b = first(k=40, **arguments), second(k=40, **arguments)
            scores = {}
            for result in (a, b):
                for rank, chunk in enumerate(result.chunks, start=1):
                    scores[chunk.chunk_id] = scores.get(chunk.chunk_id, 0.0) + 1 / (rrf_k + rank)
            chunks = {chunk.chunk_id: chunk for chunk in a.chunks + b.chunks}
            top = sorted(scores, key=lambda chunk_id: -scores[chunk_id])[:k]
            return _replace(b, chunks=[chunks[chunk_id] for chunk_id in top])

        return search

    def oracle_rewrite(**arguments):
        def rewrite(*, question, history):
            return standalone.get((*history, question))

        return conversation_search(rewrite=rewrite, **arguments)

    return {
        "plain (last turn alone)": plain,
        "concatenation (recent turns)": concatenation,
        "mix 0.5, no focus, always": always(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.0),
        "mix 0.3, no focus, always": always(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.0),
        "mix 0.5, focus 0.1, always": always(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.1),
        "mix 0.5, focus 0.2, always": always(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.2),
        "mix 0.5, focus 0.3, always": always(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.3),
        "mix 0.2, focus 0.2, always": always(CONTEXT_WEIGHT=0.2, FOCUS_BONUS=0.2),
        "mix 0.3, focus 0.1, always": always(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.1),
        "mix 0.3, focus 0.2, always": always(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.2),
        "mix 0.3, focus 0.3, always": always(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.3),
        "mix 0.4, focus 0.2, always": always(CONTEXT_WEIGHT=0.4, FOCUS_BONUS=0.2),
        "RRF(plain, mix 0.5 + focus 0.2)": fused(plain, always(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.2)),
        "mix 0.3, focus 0.2 if margin > 0.02": tuned(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.2, DEPENDENCE_MARGIN=0.02),
        "mix 0.3, focus 0.2 if margin > 0": tuned(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.2, DEPENDENCE_MARGIN=0.0),
        "mix 0.3, focus 0.3 if margin > 0": tuned(CONTEXT_WEIGHT=0.3, FOCUS_BONUS=0.3, DEPENDENCE_MARGIN=0.0),
        "mix 0.5, focus 0.2 if margin > 0": tuned(CONTEXT_WEIGHT=0.5, FOCUS_BONUS=0.2, DEPENDENCE_MARGIN=0.0),
        "default: mix 0.3, focus 0.2 if margin > -0.02": conversation_search,
        "default + oracle rewrite (hand-written)": oracle_rewrite,
    }


def _replace(result, **changes):
    from dataclasses import replace

    return replace(result, **changes)


if __name__ == "__main__":
    main()
