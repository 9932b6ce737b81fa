"""/metrics: what operators watch (answers by outcome, time to first token, tokens, model server errors,
retrieval time) moves when answers are given."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatbot.answers.pipeline import answer_generate
from chatbot.bots.services import bot_create
from tests.chatbot import page_add, question_ask

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bot(db):
    bot = bot_create(slug="metered", name="Metered")
    page_add(bot, title="Refunds", url="https://www.acme.test/help/refunds",
             text="You can ask for a refund within 30 days of purchase.")  # fmt: skip
    return bot


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_an_answer_moves_the_answer_token_latency_and_retrieval_metrics(sim, bot, client):
    sim.configure(script_text="Within 30 days [1].")
    before = scrape(client)

    message = question_ask(bot, "When can I ask for a refund?")
    answer_generate(message_id=message.id)

    after = scrape(client)
    message.refresh_from_db()
    assert moved(before, after, "parley_answers_total", bot="metered", outcome="complete") == 1
    assert moved(before, after, "parley_time_to_first_token_seconds_count", bot="metered") == 1
    assert moved(before, after, "parley_time_to_first_token_seconds_sum", bot="metered") == pytest.approx(
        message.ttft_ms / 1000
    )
    assert moved(before, after, "parley_added_latency_seconds_count", bot="metered") == 1
    assert moved(before, after, "parley_tokens_total", bot="metered", direction="in") == message.prompt_tokens
    assert moved(before, after, "parley_tokens_total", bot="metered", direction="out") == message.completion_tokens
    assert message.completion_tokens == sim.generation_requests()[-1]["tokens_sent"] > 0
    assert moved(before, after, "parley_retrieval_seconds_count") == 1
    assert moved(before, after, "parley_retrieval_seconds_sum") > 0


def test_a_failed_answer_is_counted_by_outcome_and_the_model_server_error_by_kind(sim, bot, client):
    sim.configure(fault="error_midstream", fault_after_tokens=2)
    before = scrape(client)

    message = question_ask(bot, "When can I ask for a refund?")
    answer_generate(message_id=message.id)

    after = scrape(client)
    assert moved(before, after, "parley_answers_total", bot="metered", outcome="error") == 1
    assert moved(before, after, "parley_answers_total", bot="metered", outcome="complete") == 0
    assert moved(before, after, "parley_model_server_errors_total", kind="stream_error") == 1
