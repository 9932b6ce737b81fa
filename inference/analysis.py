"""Prompts that ask the bot's own model about its conversations, for staff (never shown to visitors): a one-line
summary and a sentiment per conversation, a short label per group of similar visitor questions; and reading the
replies. As in the answer prompt, what visitors wrote is quoted DATA inside fences, never instructions.

    messages = summary_messages(lines=[("Visitor", "Do you ship to Norway?"), ...], max_prompt_tokens=1500,
                                count_tokens=estimate_tokens)
    summary, sentiment = summary_parse(reply_text)      # sentiment "" when the reply names none of SENTIMENTS
"""

from __future__ import annotations

import re
from collections.abc import Callable

from inference.prompts import _template, neutralise_fences

SENTIMENTS = ("positive", "neutral", "negative")
SUMMARY_MAX_NEW_TOKENS = 80
LABEL_MAX_NEW_TOKENS = 16
MAX_SUMMARY_CHARS = 240
MAX_LABEL_CHARS = 60
# One message of a transcript, or one question, is cut at this length: a pasted wall of text says little more.
MAX_LINE_CHARS = 600
LABEL_QUESTIONS = 12
# BOS, headers and the date line of the chat template, per prompt and per message (as inference.budget counts).
_PROMPT_OVERHEAD_TOKENS = 32 + 2 * 5
_OMITTED = "[… {n} messages left out …]"
_SUMMARY_LINE = re.compile(r"^\W*summary\W*:\s*(.+)$", re.IGNORECASE)
_SENTIMENT_LINE = re.compile(r"^\W*sentiment\W*:\s*\W*([a-z]+)", re.IGNORECASE)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary_messages(
    *, lines: list[tuple[str, str]], max_prompt_tokens: int, count_tokens: Callable[[str], int]
) -> list[dict[str, str]]:
    """The messages asking for a conversation's summary and sentiment. `lines` are (speaker, text), oldest first;
    when they do not all fit in `max_prompt_tokens`, messages are left out from the middle (the visitor's first
    questions and how it ended matter most) and the transcript says how many."""
    system = _template("summary_system.txt").template
    rendered = [f"{speaker}: {neutralise_fences(_clip(text, MAX_LINE_CHARS))}" for speaker, text in lines if text]
    costs = [count_tokens(line) + 1 for line in rendered]
    room = max_prompt_tokens - _PROMPT_OVERHEAD_TOKENS - count_tokens(system) - count_tokens(_OMITTED) - 8
    kept = list(range(len(rendered)))
    while len(kept) > 2 and sum(costs[i] for i in kept) > room:
        kept.pop(len(kept) // 2)
    body, previous = [], -1
    for index in kept:
        if index != previous + 1:
            body.append(_OMITTED.format(n=index - previous - 1))
        body.append(rendered[index])
        previous = index
    transcript = "\n".join(body)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"<<<TRANSCRIPT>>>\n{transcript}\n<<<END TRANSCRIPT>>>"},
    ]


def summary_parse(text: str) -> tuple[str, str]:
    """(summary, sentiment) from the model's reply: the `Summary:` line (else its first line) cut to one line, and
    the sentiment when the `Sentiment:` line names one of SENTIMENTS (else "")."""
    summary, sentiment, first = "", "", ""
    for line in (line.strip() for line in text.splitlines()):
        if not line:
            continue
        if match := _SENTIMENT_LINE.match(line):
            sentiment = match.group(1).lower() if match.group(1).lower() in SENTIMENTS else ""
        elif match := _SUMMARY_LINE.match(line):
            summary = summary or match.group(1).strip(" *_")
        elif not first:
            first = line
    return _clip(summary or first, MAX_SUMMARY_CHARS), sentiment


def topic_label_messages(*, questions: list[str]) -> list[dict[str, str]]:
    """The messages asking for a short label for a group of questions (the first LABEL_QUESTIONS, most central
    first)."""
    listed = "\n".join(f"- {neutralise_fences(_clip(q, MAX_LINE_CHARS // 2))}" for q in questions[:LABEL_QUESTIONS])
    return [
        {"role": "system", "content": _template("topic_label_system.txt").template},
        {"role": "user", "content": f"<<<QUESTIONS>>>\n{listed}\n<<<END QUESTIONS>>>"},
    ]


def topic_label_parse(text: str) -> str:
    """The label from the model's reply: its first line, without a "Topic:" prefix, quotes or a final full stop;
    "" when there is none."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = re.sub(r"^\W*(topic|label)\W*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \"'“”‘’`*").rstrip(".").strip()
    return _clip(line, MAX_LABEL_CHARS)


def prompt_tokens(messages: list[dict[str, str]], *, count_tokens: Callable[[str], int]) -> int:
    """The prompt's size as `inference.budget` counts it (overheads included): what the token budget is charged."""
    return _PROMPT_OVERHEAD_TOKENS + sum(count_tokens(message["content"]) for message in messages)
