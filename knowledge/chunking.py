"""Split parsed documents into chunks that fit the embedding model and still say what they are about.

Sections (headings) are never merged; inside a section a chunk ends at the strongest natural break (blank line,
line end, sentence end, word) in the second half of its token budget. Chunks are exact slices of the section text,
so what is cited is what was written. The text that is embedded is the title and the heading path joined by
`HEADING_SEPARATOR`, a blank line, then the chunk; it always fits the model's input limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.embeddings import TokenCounter
from knowledge.parsing import ParsedDocument

HEADING_SEPARATOR = " \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} "
# Tuned on tests/fixtures/eval with bench/eval_retrieval_offline.py: 200/30 had the best hybrid recall@5 (0.78),
# 256/30 was within one question of it; 100 and 150 tokens were clearly worse.
DEFAULT_CHUNK_TOKENS = 200
DEFAULT_OVERLAP_TOKENS = 30

_PARAGRAPH_BREAK = 4
_LINE_BREAK = 3
_SENTENCE_END = 2
_WORD_BREAK = 1
_NO_BREAK = 0


@dataclass(frozen=True)
class ChunkDraft:
    position: int
    text: str
    heading_path: tuple[str, ...]
    # Word pieces of `text` in the embedding tokenizer, special tokens excluded.
    token_count: int
    # What gets embedded: the heading trail, a blank line, then `text`. Never over the model's max tokens.
    embedding_text: str


def chunk_document(
    document: ParsedDocument,
    *,
    tokenizer: TokenCounter,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
    max_tokens: int | None = None,
) -> list[ChunkDraft]:
    """Chunks of at most `chunk_tokens` word pieces, consecutive chunks of a section sharing up to
    `overlap_tokens`. `max_tokens` (default: the tokenizer's) bounds the whole embedded text."""
    if chunk_tokens < 1 or overlap_tokens < 0:
        raise ValueError("chunk_tokens must be positive and overlap_tokens not negative")
    max_tokens = max_tokens if max_tokens is not None else tokenizer.max_tokens
    chunks: list[ChunkDraft] = []
    for section in document.sections:
        prefix = embedding_prefix(
            title=document.title, heading_path=section.heading_path, tokenizer=tokenizer, max_tokens=max_tokens
        )
        # Whitespace never merges word pieces, so the prefix and the text cost their separate counts.
        text_budget = min(chunk_tokens, max_tokens - tokenizer.count_tokens(prefix))
        for text in split_into_token_windows(
            section.text,
            tokenizer=tokenizer,
            window_tokens=text_budget,
            overlap_tokens=min(overlap_tokens, text_budget // 2),
        ):
            embedding_text = _fit(prefix + text, tokenizer=tokenizer, max_tokens=max_tokens)
            chunk_text = embedding_text[len(prefix) :]
            chunks.append(
                ChunkDraft(
                    position=len(chunks),
                    text=chunk_text,
                    heading_path=section.heading_path,
                    token_count=len(tokenizer.token_offsets(chunk_text)),
                    embedding_text=embedding_text,
                )
            )
    return chunks


def embedding_prefix(*, title: str, heading_path: tuple[str, ...], tokenizer: TokenCounter, max_tokens: int) -> str:
    """Title and heading path joined by `HEADING_SEPARATOR`, then a blank line. At most a quarter of
    `max_tokens`, so the chunk keeps most of the budget: middle headings go first, then the tail of the rest."""
    parts = [part for part in (title, *heading_path) if part]
    if not parts:
        return ""
    budget = max(8, max_tokens // 4)
    trail = HEADING_SEPARATOR.join(parts)
    while tokenizer.count_tokens(trail) > budget and len(parts) > 2:
        parts = [parts[0], *parts[2:]]
        trail = HEADING_SEPARATOR.join([parts[0], "…", *parts[1:]])
    if tokenizer.count_tokens(trail) > budget:
        offsets = tokenizer.token_offsets(trail)
        special_tokens = tokenizer.count_tokens("")
        trail = trail[: offsets[budget - special_tokens - 1][0]].rstrip() + "…"
    return trail + "\n\n"


def split_into_token_windows(
    text: str, *, tokenizer: TokenCounter, window_tokens: int, overlap_tokens: int
) -> list[str]:
    """Exact slices of `text` of at most `window_tokens` word pieces each, ending at natural breaks."""
    offsets = tokenizer.token_offsets(text)
    if not offsets:
        return []
    window_tokens = max(1, window_tokens)
    breaks = _break_strengths(text, offsets)
    windows: list[str] = []
    start = 0
    while start < len(offsets):
        end = min(start + window_tokens, len(offsets))
        if end < len(offsets):
            end = _strongest_break(breaks, low=start + max(1, window_tokens // 2), high=end, prefer_latest=True)
        windows.append(text[offsets[start][0] : offsets[end - 1][1]])
        if end >= len(offsets):
            break
        next_start = end
        if overlap_tokens > 0:
            # Start the overlap at the strongest break in the last `overlap_tokens`, as early as possible.
            next_start = _strongest_break(
                breaks, low=max(start + 1, end - overlap_tokens), high=end - 1, prefer_latest=False
            )
        start = next_start
    return windows


def _break_strengths(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """strengths[i]: how natural it is to cut the text just before token i."""
    strengths = [_PARAGRAPH_BREAK]
    for index in range(1, len(offsets)):
        gap = text[offsets[index - 1][1] : offsets[index][0]]
        previous_token = text[offsets[index - 1][0] : offsets[index - 1][1]]
        if gap.count("\n") >= 2:
            strengths.append(_PARAGRAPH_BREAK)
        elif "\n" in gap:
            strengths.append(_LINE_BREAK)
        elif gap and previous_token in (".", "!", "?", ":", ";"):
            strengths.append(_SENTENCE_END)
        elif gap:
            strengths.append(_WORD_BREAK)
        else:
            strengths.append(_NO_BREAK)
    return strengths


def _strongest_break(breaks: list[int], *, low: int, high: int, prefer_latest: bool) -> int:
    """The token index in [low, high] to cut before; `high` when nothing in range is stronger."""
    low = min(low, high)
    candidates = range(high, low - 1, -1) if prefer_latest else range(low, high + 1)
    best_index, best_strength = high, -1
    for index in candidates:
        strength = breaks[index] if index < len(breaks) else _PARAGRAPH_BREAK
        if strength > best_strength:
            best_index, best_strength = index, strength
    return best_index


def _fit(text: str, *, tokenizer: TokenCounter, max_tokens: int) -> str:
    # A slice cut inside a word can tokenise into more pieces on its own than it did in context; trim until
    # the model would see all of it.
    while tokenizer.count_tokens(text) > max_tokens:
        offsets = tokenizer.token_offsets(text)
        excess = tokenizer.count_tokens(text) - max_tokens
        text = text[: offsets[-excess - 1][0]].rstrip()
    return text
