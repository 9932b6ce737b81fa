"""Extractive answers: the two or three pieces of the best passages that answer a question, for when no model
writes one.

A piece is a sentence, a list item, a table's rows (under their header) or a code block, never a part of one.
Passages are chunks, and a chunk may start or end inside a sentence or a table: the pieces are cut from the
chunk's whole section (its chunks put back together), so a sentence is never cut in half and a table row keeps its
header. The candidates of all passages are scored against the question with the embedding model in one batch;
the best are returned as Markdown, each with the index of the passage it came from, for its citation.

`chunk_citation` gives that citation: "Title › Section" and the source's URL with the section's anchor, as GitHub
makes it for a Markdown heading.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
from django.conf import settings
from markdown_it import MarkdownIt

from knowledge.embeddings import get_embedder
from knowledge.models import Chunk
from knowledge.retrieval import RetrievedChunk

CITATION_SEPARATOR = " › "
# Candidates are cut from at most this many passages, at most this many in all (one forward pass of the model).
MAX_PASSAGES = 4
MAX_CANDIDATES = 48
# A second or third piece must score within this much of the best one.
SCORE_MARGIN = 0.12
# Plus this × the share of the question's words (stop words aside) that the piece contains: the model alone
# preferred "Everything is read from the environment" to the `TGI_URL` row for "which setting points Parley at my
# model server?". 0.1-0.3 measured alike on the docs' questions, 0.5 worse; a passage-score prior did not help.
LEXICAL_WEIGHT = 0.2
# What is scored of a long list item, table row or code block: its start (a sentence is scored whole): less model
# time, and 200 and 300 characters chose the same pieces for the docs' questions.
EMBEDDED_CHARS = 200
# A longer code block is a file to read, not an answer to show.
CODE_MAX_LINES = 15
_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be by can do does for from how i if in is it its me my of on or our so that the their"
        " them there these this to us was we what when where which who why will with you your",
    )
)
# A sentence that opens by pointing back ("It returns…") brings the sentence before it.
_POINTS_BACK = re.compile(r"^(it|its|this|that|these|those|they|them|such|then|otherwise|however|also)\b", re.I)
# A sentence that announces what follows ("…with the command below:") brings the code block, list or table after it.
_POINTS_FORWARD = re.compile(r"(:\s*$|\b(below|following|as follows)\b)", re.I)
# Not sentence ends: abbreviations and initials.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "cf", "mr", "mrs", "ms", "dr", "no", "fig", "approx", "incl"})
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[*_`]*[A-Z0-9])")
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)

PieceKind = Literal["sentence", "list", "table", "code"]


@dataclass(frozen=True)
class AnswerPiece:
    """Readable Markdown: sentences of one paragraph, items of one list, rows of one table under its header, or
    a code block. `chunk_index` is the index, in the chunks given, of the passage it came from."""

    text: str
    kind: PieceKind
    chunk_index: int
    score: float


@dataclass(frozen=True)
class ChunkCitation:
    """`title` is "Document › Section › Subsection"; `url` the source's URL with `#anchor` of the chunk's section
    when the source has a URL and the chunk a section (else the URL, or "")."""

    title: str
    url: str
    anchor: str


def answer_extract(
    *,
    question: str,
    question_vector: Sequence[float],
    chunks: Sequence[RetrievedChunk],
    max_pieces: int = 3,
    max_passages: int = MAX_PASSAGES,
) -> list[AnswerPiece]:
    """The pieces of `chunks` (best first, as search returns them) that best answer `question` (embedded as
    `question_vector`), best first, at most `max_pieces`. Empty when the chunks hold no text worth showing."""
    chunks = list(chunks)[:max_passages]
    candidates = _candidates(chunks)[:MAX_CANDIDATES]
    if not candidates or max_pieces < 1:
        return []
    # On the question thread, in one batch: short texts like questions, and no second torch pool fighting the
    # first for the cores (two threads on a busy 2-core machine took 1.2-1.8 s for 13 sentences, one 0.4 s).
    futures = get_embedder(settings.EMBEDDING_URL or None).embed_queries_soon([unit.embedded for unit in candidates])
    vectors = np.asarray([future.result().vector for future in futures])
    scores = vectors @ np.asarray(question_vector, dtype=vectors.dtype)
    if LEXICAL_WEIGHT:
        wanted = _terms(question)
        if wanted:
            overlap = [len(wanted & _terms(unit.text)) / len(wanted) for unit in candidates]
            scores = scores + LEXICAL_WEIGHT * np.asarray(overlap, dtype=scores.dtype)
    order = sorted(range(len(candidates)), key=lambda index: -scores[index])
    best = float(scores[order[0]])
    chosen = [index for index in order if scores[index] >= best - SCORE_MARGIN][: max(1, max_pieces)]
    chosen_units = set(chosen)
    for index in list(chosen):
        unit = candidates[index]
        if unit.kind == "sentence" and _POINTS_BACK.match(unit.text) and unit.previous is not None:
            chosen_units.add(unit.previous)
    return _pieces(candidates, chosen_units, scores)[:max_pieces]


def answer_piece_cite(*, piece: AnswerPiece, marker: str) -> str:
    """The piece's Markdown with a citation marker ("[1]") where it renders: after sentences, at the end of a list's
    last item, on a line of its own after a table or a code block (after a closing fence it would keep the fence
    open, and in a table it would be a cell)."""
    if piece.kind in ("table", "code") or piece.text.rstrip().endswith("```"):
        return f"{piece.text}\n\n{marker}"
    return f"{piece.text} {marker}"


def chunk_citation(*, chunk: RetrievedChunk) -> ChunkCitation:
    """How to cite a chunk: its document's title and heading path, and its section's anchor in the source's URL."""
    title = CITATION_SEPARATOR.join([chunk.title, *chunk.heading_path])
    anchor = heading_anchor(heading=chunk.heading_path[-1]) if chunk.heading_path else ""
    url = chunk.url
    if url and anchor:
        url = url.split("#", 1)[0] + "#" + anchor
    return ChunkCitation(title=title, url=url, anchor=anchor)


def heading_anchor(*, heading: str) -> str:
    """The id GitHub gives a Markdown heading (github-slugger): lower case, punctuation dropped except `-` and
    `_`, each space a `-`. ("Configuration" → "configuration", "The staff websocket: /ws/dashboard/" →
    "the-staff-websocket-wsdashboard".) A repeated heading's "-1" suffix is not known here."""
    slug = []
    for character in heading.strip().lower():
        category = unicodedata.category(character)
        if character == " ":
            slug.append("-")
        elif character in "-_" or category[0] in "LNM":
            slug.append(character)
    return "".join(slug)


@dataclass
class _Unit:
    kind: PieceKind
    text: str  # as shown
    embedded: str  # as scored
    chunk_index: int
    section: int
    start: int
    group: int  # paragraph, list or table it belongs to
    header: str = ""  # a table's header and delimiter lines
    previous: int | None = None  # index of the sentence before, in the same paragraph
    ordinal: int = 0  # position among the units of its section
    announces: str = ""  # the block a sentence announces, shown after it


def _candidates(chunks: list[RetrievedChunk]) -> list[_Unit]:
    units: list[_Unit] = []
    seen: set[tuple[int, int]] = set()
    sections = _sections_of(chunks)
    for chunk_index, chunk in enumerate(chunks):
        section_text = sections.get(chunk.chunk_id, chunk.text)
        start = section_text.find(chunk.text)
        if start < 0:
            section_text, start = chunk.text, 0
        end = start + len(chunk.text)
        trail = CITATION_SEPARATOR.join([chunk.title, *chunk.heading_path])
        section_id = hash((chunk.document_id, tuple(chunk.heading_path)))
        previous_index: dict[int, int] = {}
        segments = _segment(section_text)
        for position, unit in enumerate(segments):
            overlap = min(end, unit.start + len(unit.source)) - max(start, unit.start)
            if overlap <= 0 or (overlap < len(unit.source) / 2 and overlap < end - start):
                continue
            key = (section_id, unit.start)
            if key in seen:
                continue
            seen.add(key)
            index = len(units)
            units.append(
                _Unit(
                    kind=unit.kind,
                    text=unit.text,
                    embedded=f"{trail}: {unit.plain if unit.kind == 'sentence' else unit.plain[:EMBEDDED_CHARS]}",
                    chunk_index=chunk_index,
                    section=section_id,
                    start=unit.start,
                    group=unit.group,
                    header=unit.header,
                    previous=previous_index.get(unit.group) if unit.kind == "sentence" else None,
                    ordinal=unit.ordinal,
                    announces=_announced(segments, position),
                )
            )
            previous_index[unit.group] = index
    return units


def _announced(segments: list[_Segment], position: int) -> str:
    """The block right after the paragraph of a sentence that announces it, as Markdown; "" for any other. The last
    sentence of a paragraph announces the block after it when it says so ("below", a colon) or breaks off without
    a full stop ("Create staff with" before the command)."""
    segment = segments[position]
    if segment.kind != "sentence":
        return ""
    last_of_paragraph = position + 1 >= len(segments) or segments[position + 1].group != segment.group
    unfinished = last_of_paragraph and not re.search(r"[.!?][\"')\]*_`]*$", segment.text)
    if not (_POINTS_FORWARD.search(segment.text) or unfinished):
        return ""
    following = next((s for s in segments[position + 1 :] if s.group != segment.group), None)
    if following is None or following.kind == "sentence":
        return ""
    if following.kind == "table":
        rows = [s.text for s in segments[position + 1 :] if s.kind == "table" and s.group == following.group]
        return following.header + "\n" + "\n".join(rows)
    if following.kind == "list":
        return "\n".join(s.text for s in segments[position + 1 :] if s.kind == "list" and s.group == following.group)
    return following.text


def _sections_of(chunks: list[RetrievedChunk]) -> dict[int, str]:
    """Each chunk's whole section text, rebuilt from the section's chunks (consecutive chunks overlap)."""
    wanted = {(chunk.document_id, tuple(chunk.heading_path)) for chunk in chunks}
    rows = (
        Chunk.objects.filter(document_id__in={document_id for document_id, _ in wanted})
        .order_by("document_id", "position")
        .values_list("id", "document_id", "heading_path", "text")
    )
    texts: dict[tuple[int, tuple[str, ...]], str] = {}
    members: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for chunk_id, document_id, heading_path, text in rows:
        key = (document_id, tuple(heading_path))
        if key not in wanted:
            continue
        texts[key] = _joined(texts[key], text) if key in texts else text
        members.setdefault(key, []).append(chunk_id)
    return {chunk_id: texts[key] for key, chunk_ids in members.items() for chunk_id in chunk_ids}


def _joined(before: str, after: str) -> str:
    for overlap in range(min(len(before), len(after)), 0, -1):
        if before.endswith(after[:overlap]):
            return before + after[overlap:]
    return before + "\n" + after


@dataclass
class _Segment:
    kind: PieceKind
    source: str  # the exact source text
    text: str  # as shown
    plain: str  # as scored, without Markdown markers
    start: int
    group: int
    header: str = ""
    ordinal: int = 0


def _segment(text: str) -> list[_Segment]:
    """The units of a section's Markdown text, with their offsets in it."""
    lines = text.split("\n")
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    segments: list[_Segment] = []
    for group, token in enumerate(tokens):
        if token.level != 0 or token.map is None or token.nesting == -1:
            continue
        first, last = token.map
        block = "\n".join(lines[first:last])
        offset = line_starts[first]
        if token.type == "paragraph_open":
            segments += _sentences(block, offset=offset, group=group)
        elif token.type in ("fence", "code_block") and token.content.count("\n") <= CODE_MAX_LINES:
            segments.append(_Segment("code", block, block.strip("\n"), token.content.strip(), offset, group))
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            segments += _list_items(tokens, token, lines, line_starts, group=group)
        elif token.type == "table_open" and last - first > 2:
            header = "\n".join(lines[first : first + 2])
            for number in range(first + 2, last):
                row = lines[number]
                if row.strip():
                    plain = " ".join(cell.strip() for cell in row.strip().strip("|").split("|"))
                    segments.append(_Segment("table", row, row, plain, line_starts[number], group, header=header))
        elif token.type == "blockquote_open":
            segments += _sentences(block, offset=offset, group=group)
    for ordinal, segment in enumerate(segments):
        segment.ordinal = ordinal
    return segments


def _sentences(block: str, *, offset: int, group: int) -> list[_Segment]:
    protected = _CODE_SPAN.sub(lambda match: "x" * len(match.group(0)), block)
    cuts = [0]
    for match in _SENTENCE_END.finditer(protected):
        word = re.search(r"(\w+(?:\.\w+)*)\W*$", protected[cuts[-1] : match.start() + 1])
        if word and word.group(1).lower().rstrip(".") in _ABBREVIATIONS:
            continue
        cuts.append(match.end())
    cuts.append(len(block))
    segments = []
    for begin, end in pairwise(cuts):
        source = block[begin:end]
        stripped = source.strip()
        if not stripped:
            continue
        shown = " ".join(line.strip().lstrip(">").strip() for line in stripped.split("\n"))
        start = offset + begin + (len(source) - len(source.lstrip()))
        segments.append(_Segment("sentence", stripped, shown, _plain(shown), start, group))
    return segments


def _list_items(tokens, list_token, lines: list[str], line_starts: list[int], *, group: int) -> list[_Segment]:
    first, last = list_token.map
    items = []
    for token in tokens:
        if token.type == "list_item_open" and token.level == 1 and token.map and first <= token.map[0] < last:
            begin, end = token.map
            source = "\n".join(lines[begin:end]).rstrip()
            items.append(_Segment("list", source, source, _plain(source), line_starts[begin], group))
    return items


def _terms(text: str) -> set[str]:
    return {word.rstrip("s") for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in _STOP_WORDS}


def _plain(markdown: str) -> str:
    text = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", markdown, flags=re.MULTILINE)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[`*_]+", "", text)


def _pieces(units: list[_Unit], chosen: set[int], scores: np.ndarray) -> list[AnswerPiece]:
    """Chosen units grouped into readable pieces (consecutive sentences of a paragraph, items of a list, rows of a
    table), in the order of their best score."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index in sorted(chosen, key=lambda index: (units[index].section, units[index].start)):
        unit = units[index]
        groups.setdefault((unit.section, unit.group), []).append(index)
    pieces = []
    for members in groups.values():
        first = units[members[0]]
        texts = [units[index].text for index in members]
        if first.kind == "sentence":
            # Sentences that were not next to each other are marked as such.
            text = texts[0]
            for before, after in pairwise(members):
                adjacent = units[after].ordinal == units[before].ordinal + 1
                text += (" " if adjacent else " … ") + units[after].text
            if units[members[-1]].announces:
                text += "\n\n" + units[members[-1]].announces
        elif first.kind == "table":
            text = first.header + "\n" + "\n".join(texts)
        elif first.kind == "list":
            text = "\n".join(texts)
        else:
            text = "\n\n".join(texts)
        pieces.append(
            AnswerPiece(
                text=text,
                kind=first.kind,
                chunk_index=min(units[index].chunk_index for index in members),
                score=max(float(scores[index]) for index in members),
            )
        )
    return sorted(pieces, key=lambda piece: -piece.score)
