"""Retrieval quality on a question set or a conversation set: recall@k, MRR and search latency.

A question file has one `{"question": "…", "expected": ["…"]}` per line; a conversation file one
`{"turns": ["…", "…"], "expected": ["…"]}` per line, where `expected` identifies the passage that answers the last
turn, optionally with `first_expected` (the passage that answers the first turn on its own, for the first-question
recall it is compared with) and `standalone` (the last turn written to stand alone: what a perfect rewrite would
search). A retrieved chunk is relevant when its text contains any expected phrase (case-insensitive,
whitespace-normalised).
"""

import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from knowledge.conversation import conversation_search
from knowledge.retrieval import RetrievedChunk, SearchResult, chunk_search

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EvaluationQuestion:
    question: str
    expected: list[str]


@dataclass(frozen=True)
class EvaluationConversation:
    turns: list[str]
    expected: list[str]
    first_expected: list[str] | None = None
    standalone: str | None = None


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
    # Per question, in order: the rank of the first relevant chunk, or None.
    ranks: list[int | None] = field(default_factory=list)

    def as_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key not in {"misses", "ranks"}}


@dataclass(frozen=True)
class ConversationEvaluationResult(EvaluationResult):
    """The last turns' figures, the first turns' on their own (`first_question`, over the conversations that say
    what answers their first turn), and how many last turns each kind of search handled (`contexts`)."""

    first_question: EvaluationResult | None = None
    contexts: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        figures = super().as_json()
        figures["first_question"] = self.first_question.as_json() if self.first_question else None
        return figures


class QuestionFileError(ValueError):
    pass


class ConversationRetriever(Protocol):
    """How the last turn of a conversation is searched: `knowledge.conversation.conversation_search` by default;
    bench/eval_conversations.py passes others to compare."""

    def __call__(
        self,
        *,
        knowledge_base_id: int,
        question: str,
        history: Sequence[str],
        previous_chunk_ids: Sequence[int],
        k: int,
        mode: str,
    ) -> SearchResult: ...


def _normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def _read_jsonl(path: Path, *, shape: str, parse) -> list:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            raise QuestionFileError(f"{path}:{number}: expected {shape} ({error})") from None
    if not items:
        raise QuestionFileError(f"{path}: nothing to evaluate")
    return items


def _phrases(value, *, name: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(phrase, str) for phrase in value):
        raise ValueError(f"'{name}' must be a non-empty list of text")
    return value


def questions_load(path: Path) -> list[EvaluationQuestion]:
    def parse(item: dict) -> EvaluationQuestion:
        if not isinstance(item["question"], str):
            raise ValueError("'question' must be text")
        return EvaluationQuestion(question=item["question"], expected=_phrases(item["expected"], name="expected"))

    return _read_jsonl(path, shape='{"question": ..., "expected": [...]}', parse=parse)


def conversations_load(path: Path) -> list[EvaluationConversation]:
    def parse(item: dict) -> EvaluationConversation:
        turns = item["turns"]
        if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, str) and t.strip() for t in turns):
            raise ValueError("'turns' must list at least two messages")
        standalone = item.get("standalone")
        if standalone is not None and not isinstance(standalone, str):
            raise ValueError("'standalone' must be text")
        first = item.get("first_expected")
        return EvaluationConversation(
            turns=turns,
            expected=_phrases(item["expected"], name="expected"),
            first_expected=None if first is None else _phrases(first, name="first_expected"),
            standalone=standalone,
        )

    return _read_jsonl(path, shape='{"turns": [...], "expected": [...]}', parse=parse)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def relevant_rank(*, chunks: Sequence[RetrievedChunk], expected: Sequence[str]) -> int | None:
    """1-based rank of the first chunk that contains an expected phrase, or None."""
    phrases = [_normalise(phrase) for phrase in expected]
    for position, chunk in enumerate(chunks, start=1):
        text = _normalise(chunk.text)
        if any(phrase in text for phrase in phrases):
            return position
    return None


@dataclass
class _Tally:
    ranks: list[int | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    embed: list[float] = field(default_factory=list)
    search: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def add(self, *, label: str, result: SearchResult, expected: Sequence[str], elapsed_ms: float) -> None:
        rank = relevant_rank(chunks=result.chunks, expected=expected)
        self.ranks.append(rank)
        self.latencies.append(elapsed_ms)
        self.embed.append(result.embed_ms)
        self.search.append(result.search_ms)
        if rank is None:
            self.misses.append(label)

    def figures(self, *, k: int, mode: str) -> dict:
        return dict(
            recall_at_k=sum(1 for rank in self.ranks if rank is not None) / len(self.ranks),
            mrr=statistics.fmean(1.0 / rank if rank else 0.0 for rank in self.ranks),
            n=len(self.ranks),
            k=k,
            mode=mode,
            p50_ms=_percentile(self.latencies, 0.50),
            p95_ms=_percentile(self.latencies, 0.95),
            embed_p50_ms=_percentile(self.embed, 0.50),
            embed_p95_ms=_percentile(self.embed, 0.95),
            search_p50_ms=_percentile(self.search, 0.50),
            search_p95_ms=_percentile(self.search, 0.95),
            misses=self.misses,
            ranks=self.ranks,
        )


def retrieval_evaluate(
    *, knowledge_base_id: int, questions: list[EvaluationQuestion], k: int = 5, mode: str = "hybrid"
) -> EvaluationResult:
    """A question is a hit when any of the top-k chunks contains any expected phrase; its reciprocal rank is
    1 / the rank of the first such chunk."""
    tally = _Tally()
    chunk_search(knowledge_base_id=knowledge_base_id, query="warm up", k=k, mode=mode)  # load the model first
    for item in questions:
        started = time.perf_counter()
        result = chunk_search(knowledge_base_id=knowledge_base_id, query=item.question, k=k, mode=mode)
        tally.add(
            label=item.question,
            result=result,
            expected=item.expected,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
    return EvaluationResult(**tally.figures(k=k, mode=mode))


def conversations_evaluate(
    *,
    knowledge_base_id: int,
    conversations: list[EvaluationConversation],
    k: int = 5,
    mode: str = "hybrid",
    retriever: ConversationRetriever = conversation_search,
) -> ConversationEvaluationResult:
    """Replays each conversation turn by turn as the answer pipeline would: every turn is searched by `retriever`
    with the visitor's earlier turns and the chunks found for the previous turn; the last turn is scored against
    `expected` (latencies are the last turns'). The first turns, searched alone, are scored against
    `first_expected` where given."""
    last, first = _Tally(), _Tally()
    contexts: Counter[str] = Counter()
    chunk_search(knowledge_base_id=knowledge_base_id, query="warm up", k=k, mode=mode)  # load the model first
    for conversation in conversations:
        previous: list[int] = []
        for turn, question in enumerate(conversation.turns):
            started = time.perf_counter()
            result = retriever(
                knowledge_base_id=knowledge_base_id,
                question=question,
                history=conversation.turns[:turn],
                previous_chunk_ids=previous,
                k=k,
                mode=mode,
            )
            elapsed_ms = (time.perf_counter() - started) * 1000
            previous = [chunk.chunk_id for chunk in result.chunks]
            if turn == 0 and conversation.first_expected:
                first.add(label=question, result=result, expected=conversation.first_expected, elapsed_ms=elapsed_ms)
        label = " → ".join(conversation.turns)
        last.add(label=label, result=result, expected=conversation.expected, elapsed_ms=elapsed_ms)
        contexts[result.context] += 1
    return ConversationEvaluationResult(
        **last.figures(k=k, mode=mode),
        first_question=EvaluationResult(**first.figures(k=k, mode=mode)) if first.ranks else None,
        contexts=dict(contexts),
    )


def evaluation_file_run(
    *, knowledge_base_id: int, path: Path, conversations: bool = False, k: int = 5, mode: str = "hybrid"
) -> EvaluationResult:
    """`retrieval_evaluate` on a question file, or `conversations_evaluate` on a conversation file."""
    if conversations:
        return conversations_evaluate(
            knowledge_base_id=knowledge_base_id, conversations=conversations_load(path), k=k, mode=mode
        )
    return retrieval_evaluate(knowledge_base_id=knowledge_base_id, questions=questions_load(path), k=k, mode=mode)
