"""Measure retrieval on tests/fixtures/eval without a database, to tune chunking and fusion.

In memory: exact cosine search over the local embedder's vectors, a plain BM25 over the same embedded texts, and
reciprocal rank fusion of the two. A question counts as answered at rank r when the r-th chunk's text contains any
of its expected phrases (case-insensitive, whitespace-normalised).

    .venv/bin/python -m bench.eval_retrieval_offline --check          # every expected phrase is in the corpus
                                                                      # (questions.jsonl and conversations.jsonl)
    .venv/bin/python -m bench.eval_retrieval_offline                  # the default grid
    .venv/bin/python -m bench.eval_retrieval_offline --chunk-tokens 200 --overlap-tokens 30 --rrf-k 60
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.chunking import ChunkDraft, chunk_document
from knowledge.embeddings import LocalEmbedder
from knowledge.parsing import ParsedDocument, parse_document

EVAL_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eval"
TOP_K = 5
CANDIDATES_PER_MODE = 50
# A small English stop list, close in spirit to PostgreSQL's `english` text search configuration.
STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be but by can do does for from how i if in into is it its me my of on or so that the "
        "their then there these this to was what when where which while who will with without you your",
    )
)


@dataclass(frozen=True)
class Question:
    question: str
    expected: list[str]


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def load_questions() -> list[Question]:
    lines = (EVAL_DIR / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [Question(**json.loads(line)) for line in lines if line.strip()]


def load_documents() -> list[ParsedDocument]:
    return [
        parse_document(data=path.read_bytes(), filename=path.name)
        for path in sorted((EVAL_DIR / "corpus").glob("*.md"))
    ]


def load_conversation_phrases() -> list[Question]:
    """Each conversation of conversations.jsonl as its turns and every phrase it expects (last and first turn)."""
    lines = (EVAL_DIR / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
    conversations = [json.loads(line) for line in lines if line.strip()]
    return [
        Question(question=" → ".join(item["turns"]), expected=item["expected"] + item.get("first_expected", []))
        for item in conversations
    ]


def check_expected_phrases(questions: list[Question], *, label: str = "questions") -> int:
    corpus = normalise(" ".join(p.read_text(encoding="utf-8") for p in (EVAL_DIR / "corpus").glob("*.md")))
    missing = 0
    for question in questions:
        for phrase in question.expected:
            occurrences = corpus.count(normalise(phrase))
            if occurrences == 0:
                missing += 1
                print(f"MISSING  {phrase!r}  ({question.question})")
            elif occurrences > 3:
                print(f"COMMON x{occurrences}  {phrase!r}")
    print(f"{len(questions)} {label}, {missing} expected phrases missing from the corpus")
    return missing


def keyword_terms(text: str) -> list[str]:
    return [word for word in re.findall(r"\w+", text.casefold()) if word not in STOP_WORDS]


class BM25:
    def __init__(self, documents: list[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.term_counts = [Counter(keyword_terms(document)) for document in documents]
        self.lengths = np.array([sum(counts.values()) for counts in self.term_counts], dtype=float)
        self.average_length = float(self.lengths.mean())
        document_frequency = Counter(term for counts in self.term_counts for term in counts)
        total = len(documents)
        self.idf = {
            term: math.log(1 + (total - frequency + 0.5) / (frequency + 0.5))
            for term, frequency in document_frequency.items()
        }

    def scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self.term_counts))
        for term in set(keyword_terms(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            for index, counts in enumerate(self.term_counts):
                frequency = counts.get(term)
                if frequency:
                    norm = self.k1 * (1 - self.b + self.b * self.lengths[index] / self.average_length)
                    scores[index] += idf * frequency * (self.k1 + 1) / (frequency + norm)
        return scores


def reciprocal_rank_fusion(rankings: list[list[int]], *, k: int, weights: list[float]) -> list[int]:
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, index in enumerate(ranking, start=1):
            fused[index] = fused.get(index, 0.0) + weight / (k + rank)
    return sorted(fused, key=lambda index: -fused[index])


def first_relevant_rank(ranking: list[int], *, chunk_texts: list[str], expected: list[str]) -> int | None:
    phrases = [normalise(phrase) for phrase in expected]
    for rank, index in enumerate(ranking[:CANDIDATES_PER_MODE], start=1):
        if any(phrase in chunk_texts[index] for phrase in phrases):
            return rank
    return None


def recall_and_mrr(ranks: list[int | None]) -> tuple[float, float]:
    recall = sum(1 for rank in ranks if rank is not None and rank <= TOP_K) / len(ranks)
    mrr = sum(1 / rank for rank in ranks if rank is not None and rank <= TOP_K * 2) / len(ranks)
    return recall, mrr


def evaluate(
    *,
    documents: list[ParsedDocument],
    questions: list[Question],
    embedder: LocalEmbedder,
    chunk_tokens: int,
    overlap_tokens: int,
    rrf_ks: list[int],
    keyword_weights: list[float],
    query_vectors: np.ndarray,
    vector_cache: dict[str, np.ndarray],
) -> list[dict[str, object]]:
    chunks: list[ChunkDraft] = []
    for document in documents:
        chunks += chunk_document(
            document,
            tokenizer=embedder,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            max_tokens=embedder.max_tokens,
        )
    started = time.monotonic()
    # Small sections give the same chunk under every setting; embed each distinct text once per run.
    new_texts = list(dict.fromkeys(c.embedding_text for c in chunks if c.embedding_text not in vector_cache))
    for text, vector in zip(new_texts, embedder.embed_documents(new_texts), strict=True):
        vector_cache[text] = np.array(vector, dtype=np.float32)
    vectors = np.stack([vector_cache[chunk.embedding_text] for chunk in chunks])
    embed_seconds = time.monotonic() - started
    bm25 = BM25([chunk.embedding_text for chunk in chunks])
    chunk_texts = [normalise(chunk.text) for chunk in chunks]

    vector_rankings = [list(np.argsort(-(vectors @ query))[:CANDIDATES_PER_MODE]) for query in query_vectors]
    keyword_rankings = [
        [int(i) for i in np.argsort(-scores)[:CANDIDATES_PER_MODE] if scores[i] > 0]
        for scores in (bm25.scores(question.question) for question in questions)
    ]
    rows = []
    modes: list[tuple[str, list[list[int]]]] = [("vector", vector_rankings), ("keyword", keyword_rankings)]
    for k, keyword_weight in itertools.product(rrf_ks, keyword_weights):
        fused = [
            reciprocal_rank_fusion([v, kw], k=k, weights=[1.0, keyword_weight])
            for v, kw in zip(vector_rankings, keyword_rankings, strict=True)
        ]
        modes.append((f"hybrid k={k} w={keyword_weight:g}", fused))
    for mode, rankings in modes:
        ranks = [
            first_relevant_rank(ranking, chunk_texts=chunk_texts, expected=question.expected)
            for ranking, question in zip(rankings, questions, strict=True)
        ]
        recall, mrr = recall_and_mrr(ranks)
        rows.append(
            {
                "chunk_tokens": chunk_tokens,
                "overlap_tokens": overlap_tokens,
                "chunks": len(chunks),
                "embed_seconds": round(embed_seconds, 1),
                "mode": mode,
                "recall_at_5": round(recall, 3),
                "mrr_at_10": round(mrr, 3),
                "missed": [q.question for q, r in zip(questions, ranks, strict=True) if r is None or r > TOP_K],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the expected phrases exist")
    parser.add_argument("--chunk-tokens", type=int, nargs="+", default=[100, 150, 200, 256])
    parser.add_argument("--overlap-tokens", type=int, nargs="+", default=[0, 30])
    parser.add_argument("--rrf-k", type=int, nargs="+", default=[10, 60])
    parser.add_argument(
        "--keyword-weight", type=float, nargs="+", default=[1.0, 0.5], help="weight of the keyword ranking in RRF"
    )
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    arguments = parser.parse_args()

    questions = load_questions()
    missing = check_expected_phrases(questions)
    missing += check_expected_phrases(load_conversation_phrases(), label="conversations")
    if missing or arguments.check:
        sys.exit(1 if missing else 0)

    documents = load_documents()
    embedder = LocalEmbedder()
    query_vectors = np.array(embedder.embed_documents([q.question for q in questions]), dtype=np.float32)
    all_rows = []
    vector_cache: dict[str, np.ndarray] = {}
    print(f"{'chunk':>5} {'overlap':>7} {'chunks':>6} {'mode':<19} {'recall@5':>8} {'MRR@10':>7}")
    for chunk_tokens, overlap_tokens in itertools.product(arguments.chunk_tokens, arguments.overlap_tokens):
        if overlap_tokens >= chunk_tokens // 2 + 1:
            continue
        rows = evaluate(
            documents=documents,
            questions=questions,
            embedder=embedder,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            rrf_ks=arguments.rrf_k,
            keyword_weights=arguments.keyword_weight,
            query_vectors=query_vectors,
            vector_cache=vector_cache,
        )
        for row in rows:
            print(
                f"{row['chunk_tokens']:>5} {row['overlap_tokens']:>7} {row['chunks']:>6} {row['mode']:<19} "
                f"{row['recall_at_5']:>8.3f} {row['mrr_at_10']:>7.3f}",
                flush=True,
            )
            if arguments.show_misses:
                for missed in row["missed"]:
                    print(f"        missed: {missed}")
        all_rows += rows
    if arguments.json:
        arguments.json.write_text(json.dumps(all_rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
