"""Query expansion, identifier splitting, heading boosts and section leads, replayed offline on the evaluation set.

Reads every chunk of an ingested knowledge base once (vector, lexemes, token signature, heading trail), and ranks
the questions of questions.jsonl exactly as `knowledge.retrieval.chunk_search` does (exact vector half, BM25 text
half with its candidate bounds, score fusion, late interaction, identical texts once), then again with each change:

- identifier splitting: `CamelCase`, `dotted.names` and `snake_case` also indexed (and searched) as their parts
  (PostgreSQL's parser keeps `json.dumps` and `TemporaryDirectory` whole);
- RM3 pseudo-relevance feedback: the most informative lexemes of the first `m` results (document frequency from the
  knowledge base, as `knowledge_term` has it) added to the text half with weight λ;
- vocabulary expansion: each question word's nearest words of the knowledge base's own vocabulary by the embedding
  model (similarity ≥ thr), added with weight λ;
- heading boost: the IDF share of the question's lexemes found in the chunk's heading trail (or last heading),
  × h, added to the score;
- section leads: the first chunk of a section inserted after the first of its other chunks in the top results.

    PARLEY_DATA_DIR=/tmp/parley-eval .venv/bin/python -m bench.eval_retrieval_expansion --bot evalset
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
_TSVECTOR_ENTRY = re.compile(r"'((?:[^']|'')*)':")
_IDENTIFIER = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+|[A-Za-z0-9]*[a-z][A-Z][A-Za-z0-9]*|[A-Z]{2,}[a-z][A-Za-z0-9]*"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def identifier_parts(text: str) -> str:
    parts = []
    for match in _IDENTIFIER.finditer(text):
        for piece in match.group(0).split("."):
            parts += _CAMEL.sub(" ", piece).replace("_", " ").split()
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bot", required=True, help="slug of a bot whose knowledge base holds the ingested corpus")
    parser.add_argument("--questions", type=Path, default=ROOT / "tests" / "fixtures" / "eval" / "questions.jsonl")
    arguments = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
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
            "SELECT id, embedding::text, search_vector::text, text, token_signature, md5(text), document_id,"
            " heading_path, heading_text, position FROM knowledge_chunk WHERE knowledge_base_id = %s ORDER BY id",
            [knowledge_base_id],
        )
        rows = cursor.fetchall()

    def lexemes_of(texts: list[str]) -> list[set[str]]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t, tsvector_to_array(to_tsvector(%s, t)) FROM unnest(%s::text[]) AS t", [SEARCH_CONFIG, texts]
            )
            found = dict(cursor.fetchall())
        return [set(found[text]) for text in texts]

    ids = [row[0] for row in rows]
    vectors = np.array([json.loads(row[1]) for row in rows], dtype=np.float32)
    base_lexemes = [{m.replace("''", "'") for m in _TSVECTOR_ENTRY.findall(row[2])} for row in rows]
    texts = [re.sub(r"\s+", " ", row[3]).lower() for row in rows]
    signatures = [bytes(row[4]) for row in rows]
    fingerprints = [row[5] for row in rows]
    sections = [(row[6], tuple(row[7])) for row in rows]
    heading_texts = [row[8] for row in rows]
    last_headings = [(row[7][-1] if row[7] else row[8]) for row in rows]
    positions = [row[9] for row in rows]
    total = len(rows)
    leads: dict[tuple, int] = {}
    for index, section in enumerate(sections):
        if section not in leads or positions[index] < positions[leads[section]]:
            leads[section] = index
    split_lexemes = lexemes_of(
        [identifier_parts(h + "\n" + row[3]) for h, row in zip(heading_texts, rows, strict=True)]
    )
    trail_lexemes = lexemes_of([h + " " + identifier_parts(h) for h in heading_texts])
    last_lexemes = lexemes_of([h + " " + identifier_parts(h) for h in last_headings])

    embedder = get_embedder(None)
    embedded = embedder.embed_queries([q.question for q in questions])
    query_lexemes = lexemes_of([q.question for q in questions])
    query_split_lexemes = lexemes_of([identifier_parts(q.question) for q in questions])

    class Index:
        def __init__(self, lexemes: list[set[str]]) -> None:
            self.lexemes = lexemes
            self.frequency = Counter(lexeme for chunk in lexemes for lexeme in chunk)
            self.average = sum(len(chunk) for chunk in lexemes) / total

        def idf(self, lexeme: str) -> float:
            n = self.frequency.get(lexeme, 0)
            return math.log(1 + (total - n + 0.5) / (n + 0.5))

        def bm25(self, weights: dict[str, float]) -> dict[int, float]:
            # As knowledge.full_text.text_search: the rarest full-weight lexemes choose the candidates.
            terms = sorted((self.frequency[w], w) for w in weights if self.frequency.get(w))
            terms = terms[: full_text.MAX_QUERY_LEXEMES * 2]
            selective, budget = set(), full_text.MATCH_BUDGET_CHUNKS
            for n, w in terms:
                if weights[w] < 1:
                    continue
                if selective and n > budget:
                    break
                selective.add(w)
                budget -= n
            matched = [i for i in range(total) if self.lexemes[i] & selective][: full_text.MATCH_SCAN_LIMIT]
            k1, b = full_text.BM25_K1, full_text.BM25_B
            scores = {
                i: sum(weights[w] * self.idf(w) for _, w in terms if w in self.lexemes[i])
                * (k1 + 1)
                / (1 + k1 * (1 - b + b * len(self.lexemes[i]) / self.average))
                for i in matched
            }
            return dict(sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: retrieval.CANDIDATES])

    plain = Index(base_lexemes)
    split = Index([a | b for a, b in zip(base_lexemes, split_lexemes, strict=True)])

    def search(number: int, *, index: Index, weights: dict[str, float], extra=None, k: int = 10) -> list[int]:
        vector, tokens = np.array(embedded[number].vector, dtype=np.float32), embedded[number].tokens
        similarity = vectors @ vector
        text_hits = index.bm25(weights)
        candidates = list(dict.fromkeys(list(np.argsort(-similarity)[: retrieval.CANDIDATES]) + list(text_hits)))
        best = max(text_hits.values(), default=0.0) or 1.0
        late = late_interaction_scores(query_tokens=tokens, signatures=[signatures[i] for i in candidates])
        score = {
            i: float(similarity[i])
            + retrieval.TEXT_WEIGHT * text_hits.get(i, 0.0) / best
            + retrieval.LATE_INTERACTION_WEIGHT * late_score
            + (extra(i) if extra else 0.0)
            for i, late_score in zip(candidates, late, strict=True)
        }
        top, seen = [], set()
        for i in sorted(candidates, key=lambda i: (-score[i], ids[i])):
            if fingerprints[i] not in seen:
                seen.add(fingerprints[i])
                top.append(i)
            if len(top) == k:
                break
        return top

    def base_weights(number: int) -> dict[str, float]:
        return dict.fromkeys(query_lexemes[number], 1.0)

    def rm3(number: int, *, m: int, t: int, lam: float) -> list[int]:
        weights = base_weights(number)
        counts = Counter(
            lexeme for i in search(number, index=plain, weights=weights, k=m) for lexeme in plain.lexemes[i]
        )
        expansion = {w: c * plain.idf(w) for w, c in counts.items() if w not in weights and plain.frequency[w] >= 2}
        for w in sorted(expansion, key=lambda w: -expansion[w])[:t]:
            weights[w] = lam
        return search(number, index=plain, weights=weights)

    words = sorted({w.lower() for text in (row[3] for row in rows) for w in re.findall(r"[A-Za-z]{3,}", text)})
    word_lexemes = lexemes_of(words)
    vocabulary = [(w, next(iter(lex))) for w, lex in zip(words, word_lexemes, strict=True) if len(lex) == 1]
    vocabulary_vectors = np.array(embedder.embed_documents([w for w, _ in vocabulary]), dtype=np.float32)

    def vocabulary_expansion(number: int, *, threshold: float, lam: float) -> list[int]:
        weights = base_weights(number)
        question_words = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", questions[number].question)]
        if question_words:
            similar = np.array(embedder.embed_documents(question_words), dtype=np.float32) @ vocabulary_vectors.T
            for row in similar:
                for j in np.argsort(-row)[:3]:
                    if row[j] >= threshold and vocabulary[j][1] not in weights:
                        weights[vocabulary[j][1]] = lam
        return search(number, index=plain, weights=weights)

    def heading_boost(number: int, *, lexemes: list[set[str]], h: float) -> list[int]:
        wanted = set(query_lexemes[number])
        whole = sum(plain.idf(w) for w in wanted) or 1.0

        def extra(i: int) -> float:
            return h * sum(plain.idf(w) for w in wanted & lexemes[i]) / whole

        return search(number, index=plain, weights=base_weights(number), extra=extra)

    def with_leads(ranking: list[int], *, within: int) -> list[int]:
        result, seen = [], set()
        for rank, i in enumerate(ranking):
            if fingerprints[i] in seen:
                continue
            result.append(i)
            seen.add(fingerprints[i])
            lead = leads[sections[i]]
            if rank < within and lead != i and fingerprints[lead] not in seen:
                result.append(lead)
                seen.add(fingerprints[lead])
        return result

    def report(label: str, rank_for) -> None:
        ranks = []
        for number, question in enumerate(questions):
            phrases = [re.sub(r"\s+", " ", p).lower() for p in question.expected]
            ranking = rank_for(number)
            ranks.append(next((r for r, i in enumerate(ranking, 1) if any(p in texts[i] for p in phrases)), None))
        recall = sum(1 for r in ranks if r and r <= 5) / len(ranks)
        mrr = sum(1 / r for r in ranks if r and r <= 5) / len(ranks)
        print(f"{label:<52} recall@5 {recall:.3f}  MRR {mrr:.3f}", flush=True)

    report("production ranking (replayed)", lambda n: search(n, index=plain, weights=base_weights(n)))
    report("identifier parts indexed", lambda n: search(n, index=split, weights=base_weights(n)))
    report(
        "identifier parts indexed and searched",
        lambda n: search(n, index=split, weights=dict.fromkeys(query_lexemes[n] | query_split_lexemes[n], 1.0)),
    )
    for m in (3, 5, 10):
        for t in (5, 10, 20):
            for lam in (0.2, 0.5):
                report(
                    f"RM3 feedback: top {m}, {t} lexemes, weight {lam}",
                    lambda n, m=m, t=t, lam=lam: rm3(n, m=m, t=t, lam=lam),
                )
    for threshold in (0.5, 0.6, 0.7):
        for lam in (0.3, 0.6, 1.0):
            report(
                f"vocabulary expansion: similarity ≥ {threshold}, weight {lam}",
                lambda n, threshold=threshold, lam=lam: vocabulary_expansion(n, threshold=threshold, lam=lam),
            )
    for name, lexemes in (("heading trail", trail_lexemes), ("last heading", last_lexemes)):
        for h in (0.05, 0.1, 0.2, 0.4):
            report(f"{name} boost {h}", lambda n, lexemes=lexemes, h=h: heading_boost(n, lexemes=lexemes, h=h))
    for within in (1, 2, 3, 5):
        report(
            f"section lead after a chunk ranked ≤ {within}",
            lambda n, within=within: with_leads(search(n, index=plain, weights=base_weights(n), k=20), within=within),
        )


if __name__ == "__main__":
    main()
