"""Answers made without the model: passages only (no model configured, or the model server failed), and strict
mode's "I don't know"."""

from chatbot.answers.outcome import AnswerOutcome, citations_of, passage_of
from chatbot.answers.texts import answer_text
from chatbot.models import Message
from knowledge.retrieval import SearchResult

# The English texts (each in the visitor's language: chatbot.answers.texts).
STRICT_NO_ANSWER = answer_text("strict_no_answer")
MODEL_DOWN_WITH_PASSAGES = answer_text("model_down_with_passages")
MODEL_DOWN_NO_PASSAGES = answer_text("model_down_no_passages")


def retrieval_only_outcome(search: SearchResult | None, *, reason: str, language: str = "en") -> AnswerOutcome:
    """An answer made of the most relevant passages, for when the model cannot be used (its words in `language`)."""
    chunks = search.chunks[:3] if search and search.relevant else []
    if not chunks:
        return AnswerOutcome(
            text=answer_text("model_down_no_passages", language),
            status=Message.Status.RETRIEVAL_ONLY,
            finish_reason=reason,
        )
    lines = [answer_text("model_down_with_passages", language), ""]
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
