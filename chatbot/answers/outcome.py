"""What an answer came to, however it was made (the model, an approved answer, an extractive answer), before it is
saved and sent."""

from dataclasses import dataclass, field

from chatbot.models import Message
from chatbot.realtime.protocol import Citation
from inference.prompts import Passage
from knowledge.extractive import CITATION_SEPARATOR, chunk_citation
from knowledge.retrieval import RetrievedChunk


@dataclass
class AnswerOutcome:
    text: str = ""
    status: str = Message.Status.COMPLETE
    citations: list[Citation] = field(default_factory=list)
    error_code: str = ""
    error_message: str = ""
    finish_reason: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    prompt: list[dict] = field(default_factory=list)
    # The numbers (Passage.n) of the passages offered to the model that its prompt budget left out.
    passages_over_budget: list[int] = field(default_factory=list)


def passage_of(n: int, chunk: RetrievedChunk) -> Passage:
    """The chunk as the prompt shows it; its URL points at its section (knowledge.extractive.chunk_citation)."""
    return Passage(
        n=n,
        title=chunk.title,
        url=chunk_citation(chunk=chunk).url,
        text=chunk.text,
        heading_path=CITATION_SEPARATOR.join(chunk.heading_path),
    )


def citations_of(passages: list[Passage]) -> list[Citation]:
    """Citations titled as knowledge.extractive.chunk_citation titles them: "Document › Section"."""
    return [
        Citation(
            n=passage.n,
            title=CITATION_SEPARATOR.join(part for part in (passage.title, passage.heading_path) if part),
            url=passage.url,
        )
        for passage in passages
    ]
