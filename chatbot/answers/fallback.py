"""Answers made without the model: extractive answers (no model configured, or the model server failed), and
strict mode's "I don't know".

An extractive answer is the two or three pieces of the passages sent that best answer the question (sentences, list
items, table rows, code blocks, as Markdown: knowledge.extractive), each with its citation, under "From our
documentation:". When a configured model failed, a notice says so first; when nothing relevant was found, a plain
sentence says the documentation does not answer it.
"""

import logging
from collections.abc import Sequence

from django.conf import settings

from chatbot.answers.outcome import AnswerOutcome
from chatbot.answers.texts import answer_text
from chatbot.models import Message
from chatbot.realtime.protocol import Citation
from knowledge.embeddings import get_embedder
from knowledge.extractive import answer_extract, answer_piece_cite, chunk_citation
from knowledge.retrieval import RetrievedChunk

logger = logging.getLogger(__name__)

# The English texts (each in the visitor's language: chatbot.answers.texts).
STRICT_NO_ANSWER = answer_text("strict_no_answer")
MODEL_DOWN_NO_PASSAGES = answer_text("model_down_no_passages")
FROM_OUR_DOCUMENTATION = answer_text("from_our_documentation")
NOTHING_IN_DOCUMENTATION = answer_text("nothing_in_documentation")


def extractive_outcome(
    *,
    question: str,
    question_vector: Sequence[float] | None,
    chunks: Sequence[RetrievedChunk],
    reason: str,
    model_failed: bool,
    language: str = "en",
) -> AnswerOutcome:
    """The answer when the model cannot be used: `reason` is "not_configured" or why the configured model failed
    (then `model_failed`, and a notice comes first). `chunks` are the relevant passages, best first."""
    text, citations = extractive_answer(
        question=question, question_vector=question_vector, chunks=chunks, language=language
    )
    if not text:
        key = "model_down_no_passages" if model_failed else "nothing_in_documentation"
        return AnswerOutcome(
            text=answer_text(key, language), status=Message.Status.RETRIEVAL_ONLY, finish_reason=reason
        )
    if model_failed:
        text = f"{answer_text('model_down_notice', language)}\n\n{text}"
    return AnswerOutcome(text=text, status=Message.Status.RETRIEVAL_ONLY, citations=citations, finish_reason=reason)


def extractive_answer(
    *,
    question: str,
    question_vector: Sequence[float] | None,
    chunks: Sequence[RetrievedChunk],
    language: str = "en",
    first_number: int = 1,
) -> tuple[str, list[Citation]]:
    """The answer's text, "From our documentation:" and the pieces of `chunks` that answer `question` (each
    passage's pieces marked with one number, from `first_number`), and its citations ("Title › Section", the
    section's anchor in the link). ("", []) when there is nothing to show."""
    chunks = list(chunks)
    if not chunks:
        return "", []
    try:
        if question_vector is None:  # the pipeline could not embed it earlier: one more try
            question_vector = get_embedder(settings.EMBEDDING_URL or None).embed_query_soon(question).result().vector
        pieces = answer_extract(question=question, question_vector=question_vector, chunks=chunks)
    except Exception:
        logger.exception("could not extract an answer from %d passages", len(chunks))
        return "", []
    if not pieces:
        return "", []
    numbers: dict[int, int] = {}
    parts = [answer_text("from_our_documentation", language)]
    for piece in pieces:
        number = numbers.setdefault(piece.chunk_index, first_number + len(numbers))
        parts.append(answer_piece_cite(piece=piece, marker=f"[{number}]"))
    citations = []
    for chunk_index, number in numbers.items():
        citation = chunk_citation(chunk=chunks[chunk_index])
        citations.append(Citation(n=number, title=citation.title, url=citation.url))
    return "\n\n".join(parts), citations
