"""Corrections: staff write the answer a bot should have given, on its transcript; it is stored with who and when,
exported by `export_finetune` exactly as written (with the prompt as it was sent), and made an approved answer in
one click."""

import io
import json
import tempfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from chatbot.answers.corrections import NotCorrectable, correction_approve, message_correct
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.models import ApprovedAnswer, Message

from .conftest import logged_in

PROMPT_AS_SENT = [
    {"role": "system", "content": "SYSTEM PROMPT AS SENT, with passages"},
    {"role": "user", "content": "How long do refunds take?"},
]
CORRECTION = "Refunds reach your account within 5 working days.\n\nWrite to refunds@acme.test if not."


@pytest.fixture
def answer(bot):
    conversation = conversation_resume_or_start(bot=bot, visitor_id="v1")
    question = Message.objects.create(conversation=conversation, role="visitor", text="How long do refunds take?")
    return Message.objects.create(
        conversation=conversation,
        role="bot",
        in_reply_to=question,
        text="Refunds take a while.",
        prompt=PROMPT_AS_SENT,
        model="meta-llama/Llama-3.1-8B-Instruct",
    )


def exported(bot) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dataset.jsonl"
        call_command("export_finetune", "--bot", bot.slug, "--no-retrieve", "--out", str(path), stderr=io.StringIO())
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_correction_written_in_the_transcript_is_what_export_finetune_exports(agent, bot, answer):
    client = logged_in(agent)
    response = client.post(
        reverse("dashboard:message-correct", args=[answer.conversation_id, answer.id]),
        {"corrected_text": f"  {CORRECTION}  \n", "action": "save"},
    )
    assert response.status_code == 302 and response.url.endswith(f"#message-{answer.id}")

    answer.refresh_from_db()
    assert (answer.corrected_text, answer.corrected_by) == (CORRECTION, agent)
    assert answer.corrected_at is not None
    assert answer.text == "Refunds take a while.", "what the visitor saw stays as it was"
    assert exported(bot) == [{"messages": [*PROMPT_AS_SENT, {"role": "assistant", "content": CORRECTION}]}]
    page = client.get(reverse("dashboard:transcript", args=[answer.conversation_id])).content.decode()
    assert "Refunds reach your account within 5 working days." in page and "Correction</strong> by Alan" in page


def test_one_click_makes_the_correction_an_approved_answer_exported_once_with_its_prompt(agent, bot, answer):
    message_correct(message=answer, user=agent, text=CORRECTION)
    client = logged_in(agent)

    client.post(reverse("dashboard:correction-approve", args=[answer.conversation_id, answer.id]))
    client.post(reverse("dashboard:correction-approve", args=[answer.conversation_id, answer.id]))  # twice: once

    approved = ApprovedAnswer.objects.get()
    assert (approved.question, approved.answer, approved.source_message_id) == (
        "How long do refunds take?", CORRECTION, answer.id,
    )  # fmt: skip
    assert approved.created_by == agent
    assert exported(bot) == [{"messages": [*PROMPT_AS_SENT, {"role": "assistant", "content": CORRECTION}]}]
    page = client.get(reverse("dashboard:transcript", args=[answer.conversation_id])).content.decode()
    assert "Approved answer" in page and "Give this answer to similar questions" not in page


def test_saving_and_approving_is_one_click_too(agent, bot, answer):
    logged_in(agent).post(
        reverse("dashboard:message-correct", args=[answer.conversation_id, answer.id]),
        {"corrected_text": CORRECTION, "action": "approve"},
    )
    assert ApprovedAnswer.objects.get().answer == CORRECTION


def test_a_correction_changed_after_its_approval_exports_both_texts(agent, bot, answer):
    message_correct(message=answer, user=agent, text=CORRECTION)
    correction_approve(message=answer, user=agent)
    message_correct(message=answer, user=agent, text="Five working days.")

    answers = [example["messages"][-1]["content"] for example in exported(bot)]
    assert sorted(answers) == sorted([CORRECTION, "Five working days."])


def test_an_empty_correction_removes_it(agent, bot, answer):
    message_correct(message=answer, user=agent, text=CORRECTION)
    message_correct(message=answer, user=agent, text="   ")
    answer.refresh_from_db()
    assert (answer.corrected_text, answer.corrected_by, answer.corrected_at) == ("", None, None)
    assert exported(bot) == []


def test_only_finished_bot_answers_can_be_corrected(agent, bot, answer):
    with pytest.raises(NotCorrectable):
        message_correct(message=answer.in_reply_to, user=agent, text="A visitor's words are theirs.")
    Message.objects.filter(id=answer.id).update(status="streaming")
    with pytest.raises(NotCorrectable):
        message_correct(message=answer, user=agent, text="Not yet.")
    with pytest.raises(NotCorrectable):
        correction_approve(message=answer, user=agent)  # nothing corrected


def test_an_agent_of_another_bot_cannot_correct_its_answers(other_agent, bot, answer):
    response = logged_in(other_agent).post(
        reverse("dashboard:message-correct", args=[answer.conversation_id, answer.id]), {"corrected_text": "Mine"}
    )
    assert response.status_code == 404
    answer.refresh_from_db()
    assert answer.corrected_text == ""
