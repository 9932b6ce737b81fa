"""The brand-voice dataset: approved answers and staff-written or staff-corrected replies as chat-format JSONL, with
the production prompt templates."""

import io
import json

from django.contrib.auth.models import User
from django.core.management import call_command

from chatbot.answers.finetune import finetune_examples
from chatbot.bots.services import bot_create
from chatbot.models import ApprovedAnswer, Message
from inference.prompts import render_messages, render_system_prompt
from knowledge.embeddings import EMBEDDING_DIMENSIONS
from tests.chatbot import page_add

from .conftest import lead_bot_create, visit

PERSONA = "You are Acme's assistant. Warm, brief, and you always use the customer's first name."


def approved(bot, question, answer):
    return ApprovedAnswer.objects.create(
        bot=bot, question=question, answer=answer, embedding=[0.0] * (EMBEDDING_DIMENSIONS - 1) + [1.0]
    )


def exchange(bot, question, *, visitor_id="v1", answer="", status="complete", prompt=None, corrected="", staff=None):
    conversation = visit(bot, visitor_id=visitor_id)
    asked = Message.objects.create(conversation=conversation, role="visitor", text=question)
    return Message.objects.create(
        conversation=conversation,
        role="staff" if staff else "bot",
        staff_user=staff,
        text=answer,
        status=status,
        in_reply_to=None if staff else asked,
        prompt=prompt or [],
        corrected_text=corrected,
    )


def test_it_exports_approved_corrected_and_staff_answers_in_chat_format(db):
    bot = lead_bot_create(persona=PERSONA)
    agent = User.objects.create_user("sam")
    approved(bot, "Do you ship abroad?", "Yes, Ada: everywhere in the EU, Switzerland and the UK.")
    sent = [
        {"role": "system", "content": "SYSTEM PROMPT AS SENT"},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "How long do refunds take?"},
    ]
    exchange(bot, "How long do refunds take?", answer="Refunds take a while.", prompt=sent, corrected="Five days.")
    exchange(bot, "Not corrected", answer="Left alone.", visitor_id="v2")
    exchange(bot, "Can I pay by invoice?", answer="Yes, for orders over 500 €.", staff=agent, visitor_id="v3")
    # Approved again after the correction: the same pair is exported once.
    approved(bot, "Do you ship abroad?", "Yes, Ada: everywhere in the EU, Switzerland and the UK.")

    examples = list(finetune_examples(bot=bot, retrieve=False))
    assert len(examples) == 3
    system = render_system_prompt(persona=PERSONA, passages=[])
    assert examples[0] == {
        "messages": [
            *render_messages(system_prompt=system, history=[], question="Do you ship abroad?"),
            {"role": "assistant", "content": "Yes, Ada: everywhere in the EU, Switzerland and the UK."},
        ]
    }
    assert PERSONA in examples[0]["messages"][0]["content"]
    assert examples[1]["messages"] == [*sent, {"role": "assistant", "content": "Five days."}]
    assert [m["role"] for m in examples[2]["messages"]] == ["system", "user", "assistant"]
    assert examples[2]["messages"][1]["content"] == "Can I pay by invoice?"
    assert examples[2]["messages"][2]["content"] == "Yes, for orders over 500 €."


def test_it_puts_the_passages_retrieved_for_the_question_in_the_system_prompt(db):
    bot = bot_create(slug="kb", name="KB bot", persona=PERSONA)
    page_add(
        bot,
        title="Shipping",
        url="https://docs.acme.test/shipping",
        text="We ship to every country in the European Union, to Switzerland and to the United Kingdom.",
    )
    approved(bot, "Which countries do you ship to?", "The EU, Switzerland and the UK.")
    [example] = finetune_examples(bot=bot)
    system = example["messages"][0]["content"]
    assert "We ship to every country in the European Union" in system
    assert "https://docs.acme.test/shipping" in system


def test_the_export_finetune_command_writes_jsonl_without_secrets(db, tmp_path):
    bot = lead_bot_create(persona=PERSONA, crm_webhook_url="https://crm.test/hook")
    approved(bot, "Opening hours?", "9 to 6, Monday to Friday.")
    approved(bot, "Phone number?", "+33 1 23 45 67 89.")
    out = tmp_path / "acme.jsonl"
    err = io.StringIO()
    call_command("export_finetune", "--bot", "acme", "--out", str(out), "--no-retrieve", stderr=err)
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    assert "2 example(s) exported" in err.getvalue()
    for line in lines:
        example = json.loads(line)
        assert list(example) == ["messages"]
        assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"] for m in example["messages"])
    assert bot.crm_webhook_secret not in out.read_text()
