"""The prompt Parley sends with every answer, built from the templates in prompt_templates/.

Layout (Messages API): one system message = the bot's persona + the rules + the retrieved passages, numbered and
fenced as quoted DATA, + a reminder of the rules; then recent history turns; then the visitor's question as the last
user message. Passages and visitor text are untrusted: fence markers inside them are neutralised so they cannot close
the DATA block early, and the rules say that nothing inside it is an instruction.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Literal

TEMPLATES_DIR = Path(__file__).resolve().parent / "prompt_templates"
_FENCE_LIKE = re.compile(r"<{3,}|>{3,}")
_WHITESPACE = re.compile(r"\s+")
_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk; `n` is its number in the prompt, what the answer cites as [n]."""

    n: int
    title: str
    url: str
    text: str
    heading_path: str = ""


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


@functools.cache
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8").rstrip("\n"))


def neutralise_fences(text: str) -> str:
    """Break up runs of three or more angle brackets, the shape of our fence markers, so untrusted text cannot
    open or close a fence. Shorter runs (`<<` in code) are left alone."""
    return _FENCE_LIKE.sub(lambda match: " ".join(match.group()), text)


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", neutralise_fences(text)).strip() or "-"


def render_passage(passage: Passage) -> str:
    return _template("passage.txt").substitute(
        n=passage.n,
        title=_one_line(passage.title),
        url=_one_line(passage.url),
        section=_one_line(passage.heading_path),
        text=neutralise_fences(passage.text.strip()),
    )


def render_system_prompt(*, persona: str, passages: list[Passage]) -> str:
    if passages:
        rendered_passages = "\n\n".join(render_passage(passage) for passage in passages)
    else:
        rendered_passages = _template("no_passages.txt").template
    return _template("system.txt").substitute(persona=neutralise_fences(persona.strip()), passages=rendered_passages)


def render_messages(*, system_prompt: str, history: list[Turn], question: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}]
    messages += [{"role": turn.role, "content": neutralise_fences(turn.text)} for turn in history]
    messages.append({"role": "user", "content": neutralise_fences(question)})
    return messages


def extract_citations(answer_text: str, passages: list[Passage]) -> list[Passage]:
    """The passages the answer cites ([1], [2][3], [1, 3]), in order of first citation; unknown numbers are
    ignored."""
    by_number = {passage.n: passage for passage in passages}
    cited: dict[int, Passage] = {}
    for match in _CITATION.finditer(answer_text):
        for number in (int(part) for part in match.group(1).split(",")):
            if number in by_number and number not in cited:
                cited[number] = by_number[number]
    return list(cited.values())
