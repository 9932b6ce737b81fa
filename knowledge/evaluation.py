"""Retrieval quality on a question set: recall@k, MRR and search latency."""

import json
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from knowledge.retrieval import chunk_search

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EvaluationQuestion:
    question: str
    expected: list[str]


@dataclass(frozen=True)
class EvaluationResult:
    recall_at_k: float
    mrr: float
    n: int
    k: int
    mode: str
    p50_ms: float
    p95_ms: float
    # The same split: the query's embedding, and the database plus fusion (`SearchResult.search_ms`).
    embed_p50_ms: float
    embed_p95_ms: float
    search_p50_ms: float
    search_p95_ms: float
    misses: list[str]

    def as_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "misses"}


class QuestionFileError(ValueError):
    pass


def _normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def questions_load(path: Path) -> list[EvaluationQuestion]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            question, expected = item["question"], item["expected"]
        except (ValueError, KeyError, TypeError) as error:
            shape = '{"question": ..., "expected": [...]}'
            raise QuestionFileError(f"{path}:{number}: expected {shape} ({error})") from None
        if not isinstance(question, str) or not isinstance(expected, list) or not expected:
            raise QuestionFileError(f"{path}:{number}: 'question' must be text and 'expected' a non-empty list")
        questions.append(EvaluationQuestion(question=question, expected=[str(phrase) for phrase in expected]))
    if not questions:
        raise QuestionFileError(f"{path}: no questions")
    return questions


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def retrieval_evaluate(
    *, knowledge_base_id: int, questions: list[EvaluationQuestion], k: int = 5, mode: str = "hybrid"
) -> EvaluationResult:
    """A question is a hit when any of the top-k chunks contains any expected phrase (case-insensitive,
    whitespace-normalised); its reciprocal rank is 1 / the rank of the first such chunk."""
    hits, reciprocal_ranks, latencies, misses = 0, [], [], []
    embed_latencies, search_latencies = [], []
    chunk_search(knowledge_base_id=knowledge_base_id, query="warm up", k=k, mode=mode)  # load the model first
    for item in questions:
        started = time.perf_counter()
        result = chunk_search(knowledge_base_id=knowledge_base_id, query=item.question, k=k, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        embed_latencies.append(result.embed_ms)
        search_latencies.append(result.search_ms)
        expected = [_normalise(phrase) for phrase in item.expected]
        rank = next(
            (
                position
                for position, chunk in enumerate(result.chunks, start=1)
                if any(phrase in _normalise(chunk.text) for phrase in expected)
            ),
            None,
        )
        if rank is None:
            reciprocal_ranks.append(0.0)
            misses.append(item.question)
        else:
            hits += 1
            reciprocal_ranks.append(1.0 / rank)
    return EvaluationResult(
        recall_at_k=hits / len(questions),
        mrr=statistics.fmean(reciprocal_ranks),
        n=len(questions),
        k=k,
        mode=mode,
        p50_ms=_percentile(latencies, 0.50),
        p95_ms=_percentile(latencies, 0.95),
        embed_p50_ms=_percentile(embed_latencies, 0.50),
        embed_p95_ms=_percentile(embed_latencies, 0.95),
        search_p50_ms=_percentile(search_latencies, 0.50),
        search_p95_ms=_percentile(search_latencies, 0.95),
        misses=misses,
    )
