"""What an answer came to, however it was made (the model, an approved answer, passages only), before it is saved
and sent."""

from dataclasses import dataclass, field

from chatbot.models import Message
from chatbot.realtime.protocol import Citation
from inference.prompts import Passage
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


def passage_of(n: int, chunk: RetrievedChunk) -> Passage:
    return Passage(n=n, title=chunk.title, url=chunk.url, text=chunk.text, heading_path=" › ".join(chunk.heading_path))


def citations_of(passages: list[Passage]) -> list[Citation]:
    return [Citation(n=passage.n, title=passage.title, url=passage.url) for passage in passages]
