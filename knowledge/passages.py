"""Which of the ranked passages to send to the model, and why the others were not.

A fixed five sent the model noise for a question with two good passages and left out the answer when it ranked
sixth. `passages_choose` goes down the ranking and sends a passage while it is relevant enough, up to a maximum:

- `below_relevance`: its score is under `relative_cutoff` × the best passage's score, or its cosine similarity to
  the question is under `min_similarity` (an absolute floor: nothing is sent for an off-topic question);
- `over_max`: `max_passages` were already chosen;
- `over_budget`: left for the caller, who fits the chosen passages into the model's prompt (inference's budget)
  and marks those that did not fit with `PassageChoice.over_budget`.

Tuned on tests/fixtures/eval (docs/retrieval.md): every answering passage of the question set scored at least 0.68
of the best score (5% under 0.82) and had a similarity of at least 0.29, while off-topic questions found nothing
above 0.25 but one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from knowledge.retrieval import RetrievedChunk

DEFAULT_MAX_PASSAGES = 8
RELATIVE_CUTOFF = 0.65
MIN_SIMILARITY = 0.25

PassageCutReason = Literal["below_relevance", "over_max", "over_budget"]


@dataclass(frozen=True)
class PassageDecision:
    chunk: RetrievedChunk
    # None when the passage is sent.
    cut: PassageCutReason | None = None

    @property
    def sent(self) -> bool:
        return self.cut is None


@dataclass(frozen=True)
class PassageChoice:
    """Every ranked passage, in rank order, with whether it is sent and, if not, why."""

    decisions: list[PassageDecision]

    @property
    def sent(self) -> list[RetrievedChunk]:
        return [decision.chunk for decision in self.decisions if decision.sent]

    @property
    def cut(self) -> list[PassageDecision]:
        return [decision for decision in self.decisions if not decision.sent]

    def over_budget(self, chunk_ids: Collection[int]) -> PassageChoice:
        """The same choice with these sent passages marked as cut for the prompt budget."""
        return PassageChoice(
            decisions=[
                replace(decision, cut="over_budget")
                if decision.sent and decision.chunk.chunk_id in chunk_ids
                else decision
                for decision in self.decisions
            ]
        )


def passages_choose(
    *,
    chunks: Sequence[RetrievedChunk],
    max_passages: int = DEFAULT_MAX_PASSAGES,
    relative_cutoff: float = RELATIVE_CUTOFF,
    min_similarity: float = MIN_SIMILARITY,
) -> PassageChoice:
    """Choose, in rank order, the passages worth sending out of `chunks` (best first, as search returns them; ask
    search for at least `max_passages`). A passage without a similarity (text-only search) is judged by its score
    alone."""
    if max_passages < 0:
        raise ValueError("max_passages must not be negative")
    best = max((chunk.score for chunk in chunks), default=0.0)
    decisions, sent = [], 0
    for chunk in chunks:
        relevant = (chunk.similarity is None or chunk.similarity >= min_similarity) and (
            best <= 0 or chunk.score >= relative_cutoff * best
        )
        if not relevant:
            decisions.append(PassageDecision(chunk=chunk, cut="below_relevance"))
        elif sent >= max_passages:
            decisions.append(PassageDecision(chunk=chunk, cut="over_max"))
        else:
            decisions.append(PassageDecision(chunk=chunk))
            sent += 1
    return PassageChoice(decisions=decisions)
