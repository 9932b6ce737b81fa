"""Brand voice: a bot's approved answers and its staff-corrected and staff-written replies as a chat-format
fine-tuning dataset for a LoRA adapter of its model (docs/brand-voice.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from chatbot.answers.outcome import passage_of
from chatbot.models import ApprovedAnswer, Bot, Message
from inference.prompts import Passage, render_messages, render_system_prompt
from knowledge.retrieval import chunk_search

PASSAGES_PER_EXAMPLE = 5


@dataclass(frozen=True)
class FinetuneSource:
    kind: str  # approved_answer | corrected_answer | staff_reply
    question: str
    answer: str
    prompt: tuple = ()  # the messages sent to the model in production, when known


def _finetune_sources(bot: Bot) -> Iterator[FinetuneSource]:
    for approved in (
        ApprovedAnswer.objects.filter(bot=bot).select_related("source_message").order_by("created_at", "id")
    ):
        source = approved.source_message
        if source is not None and source.corrected_text.strip() == approved.answer.strip():
            continue  # approved from a correction: exported below as that correction, with its prompt as sent
        yield FinetuneSource("approved_answer", approved.question, approved.answer)
    corrected = (
        Message.objects.filter(conversation__bot=bot, role=Message.Role.BOT)
        .exclude(corrected_text="")
        .select_related("in_reply_to")
        .order_by("created_at", "id")
    )
    for message in corrected:
        question = message.in_reply_to.text if message.in_reply_to else ""
        prompt = tuple(m for m in message.prompt if isinstance(m, dict)) if message.prompt else ()
        yield FinetuneSource("corrected_answer", question, message.corrected_text, prompt)
    staff = Message.objects.filter(conversation__bot=bot, role=Message.Role.STAFF).order_by("created_at", "id")
    for message in staff:
        question = (
            Message.objects.filter(
                conversation_id=message.conversation_id, role=Message.Role.VISITOR, created_at__lte=message.created_at
            )
            .order_by("-created_at", "-id")
            .values_list("text", flat=True)
            .first()
        )
        if question:
            yield FinetuneSource("staff_reply", question, message.corrected_text or message.text)


def _passages_for(bot: Bot, question: str) -> list[Passage]:
    if bot.knowledge_base_id is None:
        return []
    search = chunk_search(knowledge_base_id=bot.knowledge_base_id, query=question, k=PASSAGES_PER_EXAMPLE)
    if not search.relevant:
        return []
    return [passage_of(n, chunk) for n, chunk in enumerate(search.chunks, start=1)]


def finetune_examples(*, bot: Bot, retrieve: bool = True) -> Iterator[dict]:
    """Chat-format training examples from the bot's approved answers and its staff-corrected and staff-written
    replies: `{"messages": [system, user, assistant]}`. The system prompt is built with production's templates
    (the bot's persona and the passages retrieved for the question now; the prompt exactly as sent, for a corrected
    answer that kept it). Duplicates (same question and answer) are left out."""

    seen: set[tuple[str, str]] = set()
    for source in _finetune_sources(bot):
        question, answer = source.question.strip(), source.answer.strip()
        key = (" ".join(question.lower().split()), " ".join(answer.split()))
        if not question or not answer or key in seen:
            continue
        seen.add(key)
        if source.prompt and source.prompt[0].get("role") == "system" and source.prompt[-1].get("role") == "user":
            messages = [{"role": m["role"], "content": m["content"]} for m in source.prompt]
        else:
            passages = _passages_for(bot, question) if retrieve else []
            system_prompt = render_system_prompt(persona=bot.persona, passages=passages)
            messages = render_messages(system_prompt=system_prompt, history=[], question=question)
        messages.append({"role": "assistant", "content": answer})
        yield {"messages": messages}


def finetune_export(*, bot: Bot, out: IO[str], retrieve: bool = True) -> int:
    """Write the JSONL dataset; returns the number of examples."""
    count = 0
    for example in finetune_examples(bot=bot, retrieve=retrieve):
        out.write(json.dumps(example, ensure_ascii=False) + "\n")
        count += 1
    return count
