"""`manage.py ask`: a question from the command line, answered by the same pipeline as the widget."""

import io
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from chatbot.bots.services import bot_create
from devtools.pytest_plugin import subprocess_environment
from devtools.stack import BASE_DIR
from devtools.tgi_simulator import RECORDINGS_DIR
from tests.chatbot import page_add

FIXTURES = RECORDINGS_DIR
RECORDED = json.loads((FIXTURES / "test_flash_llama_completion_stream_usage.json").read_text())
RECORDED_TEXT = "".join(chunk["choices"][0]["delta"]["content"] for chunk in RECORDED if chunk["choices"])

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bot(db):
    return bot_create(slug="acme", name="Acme Support")


def ask(*arguments: str) -> str:
    out = io.StringIO()
    call_command("ask", *arguments, "--inline", stdout=out)
    return out.getvalue()


def test_it_streams_the_models_answer(sim, bot):
    printed = ask("--bot", "acme", "What is Deep Learning?")

    assert printed.startswith(RECORDED_TEXT)
    assert "Sources:" not in printed


def test_it_lists_the_cited_sources_after_the_answer(sim, bot):
    page_add(bot, title="Refunds", url="https://www.acme.test/help/refunds",
             text="You can ask for a refund within 30 days of purchase.")  # fmt: skip
    sim.configure(script_text="Within 30 days of purchase [1].")

    printed = ask("--bot", "acme", "When can I ask for a refund?")

    answer, sources = printed.split("\nSources:\n")
    assert answer.startswith("Within 30 days of purchase [1].")
    assert sources.strip() == "[1] Refunds https://www.acme.test/help/refunds"


def test_it_refuses_an_unknown_bot(bot):
    with pytest.raises(CommandError, match="no bot with the slug 'nope'"):
        ask("--bot", "nope", "Hello?")


def test_it_exits_with_a_one_line_message_when_it_cannot_answer_at_all(db):
    """No model server and no knowledge to fall back on: the process fails, saying why in one line."""
    bot_create(slug="bare", name="Bare", with_knowledge_base=False)

    finished = subprocess.run(
        [sys.executable, "manage.py", "ask", "--bot", "bare", "--inline", "Where is my parcel?"],
        cwd=BASE_DIR,
        env=subprocess_environment(TGI_URL=""),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode != 0
    error_lines = [line for line in finished.stderr.splitlines() if line.startswith("CommandError")]
    assert error_lines == ["CommandError: no model answered and no relevant passage was found"]
    assert finished.stdout.startswith("I couldn't find anything in our documentation that answers this.")
