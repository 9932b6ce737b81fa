"""Answers made without the model: passages only (no model configured, or the model server failed), and strict
mode's "I don't know"."""

from chatbot.answers.outcome import AnswerOutcome, citations_of, passage_of
from chatbot.models import Message
from knowledge.retrieval import SearchResult

STRICT_NO_ANSWER = (
    "I'm sorry, I couldn't find anything about that in our documentation, so I'd rather not guess. "
    "You can ask for a person from our team, or leave your details and we'll get back to you."
)
MODEL_DOWN_WITH_PASSAGES = (
    "I can't write a full answer right now, but these passages from our documentation look relevant:"
)
MODEL_DOWN_NO_PASSAGES = (
    "I'm sorry, I can't answer right now. Please try again in a few minutes, or ask for a person from our team."
)


def retrieval_only_outcome(search: SearchResult | None, *, reason: str) -> AnswerOutcome:
    """An answer made of the most relevant passages, for when the model cannot be used."""
    chunks = search.chunks[:3] if search and search.relevant else []
    if not chunks:
        return AnswerOutcome(
            text=MODEL_DOWN_NO_PASSAGES,
            status=Message.Status.RETRIEVAL_ONLY,
            finish_reason=reason,
        )
    lines = [MODEL_DOWN_WITH_PASSAGES, ""]
    for n, chunk in enumerate(chunks, start=1):
        where = " › ".join([chunk.title, *chunk.heading_path[-1:]]) if chunk.heading_path else chunk.title
        excerpt = " ".join(chunk.text.split())
        excerpt = excerpt if len(excerpt) <= 300 else excerpt[:297].rsplit(" ", 1)[0] + "…"
        lines.append(f"{n}. **{where}**: {excerpt} [{n}]")
    passages = [passage_of(n, chunk) for n, chunk in enumerate(chunks, start=1)]
    return AnswerOutcome(
        text="\n".join(lines),
        status=Message.Status.RETRIEVAL_ONLY,
        citations=citations_of(passages),
        finish_reason=reason,
    )
