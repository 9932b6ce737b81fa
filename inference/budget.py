"""Fitting a prompt into the model's context: what goes in, in which order, and what is left out.

Priority: the system prompt (persona + rules) and the visitor's question always go in (an overlong question is
cut, and the result says so); then passages by rank while they fit; then as much recent history as is left,
newest first. Room for `max_new_tokens` is kept within the model's `max_total_tokens`, and `max_input_tokens` is
respected. `count_tokens` is any text -> int counter, usually `functools.partial(inference.client.count_tokens,
endpoint)`; pieces are counted separately and summed, with margins so that the sum does not under-count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from inference.client import ModelInfo
from inference.prompts import (
    Passage,
    Turn,
    neutralise_fences,
    render_messages,
    render_passage,
    render_system_prompt,
)

# BOS, the assistant header that opens the answer, and the date header Llama 3.1's template adds to the system turn.
PROMPT_OVERHEAD_TOKENS = 32
# <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>
MESSAGE_OVERHEAD_TOKENS = 5
# The blank line between passages, plus slack for tokens merging across the seam.
PASSAGE_SEPARATOR_TOKENS = 2
MIN_QUESTION_TOKENS = 16
TRUNCATION_MARK = " […]"


class PromptBudgetError(ValueError):
    """Even the system prompt and a minimal question do not fit: the persona is too long for this model."""


@dataclass(frozen=True)
class BuiltPrompt:
    """`passages_used` are renumbered 1..k in prompt order: extract citations from the answer against them."""

    messages: list[dict[str, str]]
    passages_used: list[Passage]
    history_used: list[Turn]
    prompt_tokens: int
    question_truncated: bool


def build_prompt(
    *,
    persona: str,
    passages: list[Passage],
    history: list[Turn],
    question: str,
    model_info: ModelInfo,
    count_tokens: Callable[[str], int],
    max_new_tokens: int,
    max_question_share: float = 0.5,
) -> BuiltPrompt:
    """Build the messages for one answer within the model's limits.

    `passages` come best first and `history` oldest first. The question may take at most `max_question_share` of
    what the system prompt leaves, so that a pasted wall of text cannot crowd out every passage.
    """
    input_budget = min(model_info.max_input_tokens, model_info.max_total_tokens - max_new_tokens)
    # The empty-passages placeholder is counted too; it is dropped when passages go in, so this over-counts a bit.
    used = (
        PROMPT_OVERHEAD_TOKENS
        + MESSAGE_OVERHEAD_TOKENS
        + count_tokens(render_system_prompt(persona=persona, passages=[]))
    )
    if used + MESSAGE_OVERHEAD_TOKENS + MIN_QUESTION_TOKENS > input_budget:
        raise PromptBudgetError(
            f"the system prompt needs {used} tokens; the model leaves {input_budget} for the whole prompt "
            f"after {max_new_tokens} for the answer"
        )

    question_limit = max(int((input_budget - used) * max_question_share), MIN_QUESTION_TOKENS)
    question_text, question_truncated = _fit_text(
        neutralise_fences(question), limit=question_limit - MESSAGE_OVERHEAD_TOKENS, count_tokens=count_tokens
    )
    used += MESSAGE_OVERHEAD_TOKENS + count_tokens(question_text)

    passages_used: list[Passage] = []
    for passage in passages:
        numbered = dataclasses.replace(passage, n=len(passages_used) + 1)
        cost = count_tokens(render_passage(numbered)) + PASSAGE_SEPARATOR_TOKENS
        if used + cost <= input_budget:  # a passage too big to fit is skipped; smaller ones after it may fit
            passages_used.append(numbered)
            used += cost

    newest_first: list[Turn] = []
    for turn in reversed(history):
        cost = MESSAGE_OVERHEAD_TOKENS + count_tokens(neutralise_fences(turn.text))
        if used + cost > input_budget:
            break  # skipping a turn and keeping older ones would leave a conversation with a hole in it
        newest_first.append(turn)
        used += cost
    history_used = newest_first[::-1]
    # Chat templates expect the turns after the system message to start with the user.
    while history_used and history_used[0].role != "user":
        dropped = history_used.pop(0)
        used -= MESSAGE_OVERHEAD_TOKENS + count_tokens(neutralise_fences(dropped.text))

    messages = render_messages(
        system_prompt=render_system_prompt(persona=persona, passages=passages_used),
        history=history_used,
        question=question_text,
    )
    return BuiltPrompt(
        messages=messages,
        passages_used=passages_used,
        history_used=history_used,
        prompt_tokens=used,
        question_truncated=question_truncated,
    )


def _fit_text(text: str, *, limit: int, count_tokens: Callable[[str], int]) -> tuple[str, bool]:
    """The text, or its longest prefix (marked as cut) that fits in `limit` tokens."""
    if count_tokens(text) <= limit:
        return text, False
    shortest, longest = 0, len(text)
    while shortest < longest:  # binary search on characters: a few count_tokens calls, not one per character
        middle = (shortest + longest + 1) // 2
        if count_tokens(text[:middle].rstrip() + TRUNCATION_MARK) <= limit:
            shortest = middle
        else:
            longest = middle - 1
    return text[:shortest].rstrip() + TRUNCATION_MARK, True
