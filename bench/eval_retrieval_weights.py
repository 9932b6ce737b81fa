"""Replay hybrid search offline over an ingested knowledge base, to tune the fusion weights without re-ingesting.

Reads every chunk of the knowledge base once (vector, lexemes, token signature) and the questions' vectors, lexemes
and token embeddings, then ranks exactly as `knowledge.retrieval.chunk_search` does (exact vector half, BM25 text
half with the same candidate bounds, fusion, identical texts once) for a grid of BM25 weights × late-interaction
weights. A question counts as answered when one of the top k chunks contains an expected phrase.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.eval_retrieval_weights --bot evalset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_TSVECTOR_ENTRY = re.compile(r"'((?:[^']|'')*)':")


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", required=True, help="slug of a bot whose knowledge base holds the ingested corpus")
    parser.add_argument("--questions", type=Path, default=ROOT / "tests" / "fixtures" / "eval" / "questions.jsonl")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--text-weights", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--late-weights", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    # DEBUG is off by default, and then settings need a key: a throwaway one for this run.
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_hex(16))
    from chatbot.ops.embedded import configure_environment

    configure_environment()
    import django

    django.setup()
    from django.db import connection

    from chatbot.models import Bot
    from knowledge import full_text, retrieval
    from knowledge.embeddings import get_embedder
    from knowledge.evaluation import questions_load
    from knowledge.late_interaction import late_interaction_scores
    from knowledge.models import SEARCH_CONFIG

    knowledge_base_id = Bot.objects.get(slug=arguments.bot).knowledge_base_id
    questions = questions_load(arguments.questions)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT embedding::text, search_vector::text, text, token_signature, md5(text) FROM knowledge_chunk"
            " WHERE knowledge_base_id = %s ORDER BY id",
            [knowledge_base_id],
        )
        rows = cursor.fetchall()
        query_lexemes = []
        for question in questions:
            cursor.execute("SELECT tsvector_to_array(to_tsvector(%s, %s))", [SEARCH_CONFIG, question.question])
            query_lexemes.append(cursor.fetchone()[0])
    if any(row[3] is None for row in rows):
        sys.exit("some chunks have no token signature: ingest the corpus again with the local model")
    vectors = np.array([json.loads(row[0]) for row in rows], dtype=np.float32)
    lexemes = [{match.replace("''", "'") for match in _TSVECTOR_ENTRY.findall(row[1])} for row in rows]
    texts = [_normalise(row[2]) for row in rows]
    signatures = [bytes(row[3]) for row in rows]
    fingerprints = [row[4] for row in rows]
    embedder = get_embedder(None)
    query_vectors = np.array(embedder.embed_documents([q.question for q in questions]), dtype=np.float32)
    late = [
        np.array(late_interaction_scores(query_tokens=embedder.embed_query_tokens(q.question), signatures=signatures))
        for q in questions
    ]
    frequency = Counter(lexeme for chunk in lexemes for lexeme in chunk)
    total, average_length = len(rows), sum(len(chunk) for chunk in lexemes) / len(rows)

    def bm25(words: list[str]) -> dict[int, float]:
        # As knowledge.full_text.text_search: rarest lexemes choose the candidates, every lexeme scores.
        terms = sorted((frequency[w], w) for w in set(words) if frequency.get(w))[: full_text.MAX_QUERY_LEXEMES]
        idf = {w: math.log(1 + (total - n + 0.5) / (n + 0.5)) for n, w in terms}
        selective, budget = set(), full_text.MATCH_BUDGET_CHUNKS
        for n, w in terms:
            if selective and n > budget:
                break
            selective.add(w)
            budget -= n
        matched = [i for i in range(total) if lexemes[i] & selective][: full_text.MATCH_SCAN_LIMIT]
        k1, b = full_text.BM25_K1, full_text.BM25_B
        scores = {
            i: sum(idf[w] for w in idf if w in lexemes[i])
            * (k1 + 1)
            / (1 + k1 * (1 - b + b * len(lexemes[i]) / average_length))
            for i in matched
        }
        return dict(sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: retrieval.CANDIDATES])

    halves = []
    for number, query_vector in enumerate(query_vectors):
        similarity = vectors @ query_vector
        nearest = list(np.argsort(-similarity)[: retrieval.CANDIDATES])
        text_hits = bm25(query_lexemes[number])
        halves.append((similarity, list(dict.fromkeys(nearest + list(text_hits))), text_hits))

    def recall_and_mrr(text_weight: float, late_weight: float) -> tuple[float, float]:
        hits, reciprocal = 0, 0.0
        for number, (similarity, candidates, text_hits) in enumerate(halves):
            best = max(text_hits.values(), default=0.0) or 1.0
            ranked = sorted(
                candidates,
                key=lambda i: (
                    -(similarity[i] + text_weight * text_hits.get(i, 0.0) / best + late_weight * late[number][i])
                ),
            )
            top, seen = [], set()
            for i in ranked:
                if fingerprints[i] not in seen:
                    seen.add(fingerprints[i])
                    top.append(i)
                if len(top) == arguments.k:
                    break
            phrases = [_normalise(phrase) for phrase in questions[number].expected]
            rank = next((r for r, i in enumerate(top, 1) if any(p in texts[i] for p in phrases)), None)
            if rank:
                hits += 1
                reciprocal += 1 / rank
        return hits / len(questions), reciprocal / len(questions)

    print(f"recall@{arguments.k} (MRR) by late-interaction weight (rows) and BM25 weight (columns)")
    print("late \\ bm25 " + "".join(f"{weight:>15g}" for weight in arguments.text_weights))
    for late_weight in arguments.late_weights:
        cells = [recall_and_mrr(text_weight, late_weight) for text_weight in arguments.text_weights]
        print(f"{late_weight:>12g} " + "".join(f"  {recall:.3f} ({mrr:.3f})" for recall, mrr in cells))


if __name__ == "__main__":
    main()
