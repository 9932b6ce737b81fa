"""What the visitor gets when the model cannot write the answer: an extractive answer from the documentation with
citations "Title › Section" (no model configured: said plainly; the model failed: a notice first), a plain
sentence when nothing in the documentation answers. And what the saved trace says about the passages (sent, or
cut and why), and the model name sent to the model server (MODEL_NAME, unless the bot names an adapter).

Real PostgreSQL, Redis and embeddings; the model server is the TGI simulator over HTTP."""

import pytest

from chatbot.answers.pipeline import answer_generate
from chatbot.answers.texts import ANSWER_TEXTS
from chatbot.bots.services import bot_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.models import Message
from devtools.stack import free_port
from tests.chatbot import GroupListener, page_add, stop_requests_forget

pytestmark = pytest.mark.django_db(transaction=True)

SHIPPING = """We send parcels from our warehouse in Hamburg.

## Delivery times

| Country | Delivery time |
|---|---|
| Germany | 1-2 business days |
| Norway | 6-8 business days |

## Returns

- Print the return label from your account.
- Drop the parcel at any post office within 30 days.
"""
FROM_OUR_DOCUMENTATION = ANSWER_TEXTS["from_our_documentation"]["en"]
MODEL_DOWN_NOTICE = ANSWER_TEXTS["model_down_notice"]["en"]


@pytest.fixture(autouse=True)
def no_stale_stop_requests():
    stop_requests_forget()


@pytest.fixture
def shop(db):
    bot = bot_create(slug="shop", name="Shop", allowed_origins=["https://www.shop.test"])
    page_add(bot, title="Shipping", url="https://www.shop.test/help/shipping", text=SHIPPING)
    page_add(
        bot,
        title="Opening hours",
        url="https://www.shop.test/help/hours",
        text="Our support team answers chats from 9:00 to 18:00, Monday to Friday.",
    )
    return bot


def ask(bot, text: str, *, language: str = "", visitor_id: str = "visitor-1") -> Message:
    conversation = conversation_resume_or_start(bot=bot, visitor_id=visitor_id, language=language)
    return message_receive(conversation=conversation, text=text, dispatch_answer=False)[1]


def answered(message: Message) -> tuple[Message, list[dict]]:
    with GroupListener(message.conversation.group_name) as listener:
        answer_generate(message_id=message.id)
        listener.wait_for("chat.done")
        events = listener.settle()
    message.refresh_from_db()
    return message, events


# --- no model configured ---------------------------------------------------------------------------------------


def test_without_a_model_it_answers_from_the_documentation_with_whole_pieces_and_section_citations(shop, settings):
    settings.TGI_URL = ""

    message, events = answered(ask(shop, "How long does delivery to Norway take?"))

    assert message.status == Message.Status.RETRIEVAL_ONLY
    assert message.finish_reason == "not_configured"
    assert message.text.startswith(f"{FROM_OUR_DOCUMENTATION}\n\n")
    assert "| Norway | 6-8 business days |" in message.text, "table rows under their header, not flattened"
    assert "| Country | Delivery time |" in message.text
    assert "unavailable" not in message.text.lower() and "relevant passages" not in message.text
    assert {
        "n": 1,
        "title": "Shipping › Delivery times",
        "url": "https://www.shop.test/help/shipping#delivery-times",
    } in (message.citations)
    assert "[1]" in message.text
    assert events[-1]["text"] == message.text and events[-1]["citations"] == message.citations


def test_without_a_model_an_off_topic_question_is_told_plainly_that_the_documentation_does_not_answer_it(
    shop, settings
):
    settings.TGI_URL = ""

    message, _ = answered(ask(shop, "What is the airspeed velocity of an unladen swallow?"))

    assert message.text == ANSWER_TEXTS["nothing_in_documentation"]["en"]
    assert message.citations == []
    assert message.status == Message.Status.RETRIEVAL_ONLY


def test_without_a_model_the_answer_from_the_documentation_is_introduced_in_the_visitors_language(shop, settings):
    settings.TGI_URL = ""

    message, _ = answered(ask(shop, "How long does delivery to Norway take?", language="fr"))

    assert message.text.startswith("D'après notre documentation :\n\n")


# --- the model configured, but failing -------------------------------------------------------------------------


def test_when_the_model_server_is_down_a_notice_comes_before_the_answer_from_the_documentation(shop, settings):
    settings.TGI_URL = f"http://127.0.0.1:{free_port()}"

    message, _ = answered(ask(shop, "How do I return a parcel?"))

    assert message.status == Message.Status.RETRIEVAL_ONLY
    assert message.finish_reason == "unreachable"
    assert message.text.startswith(f"{MODEL_DOWN_NOTICE}\n\n{FROM_OUR_DOCUMENTATION}\n\n")
    assert "- Drop the parcel at any post office within 30 days." in message.text, "list items stay list items"
    assert message.citations[0]["title"] == "Shipping › Returns"


def test_when_the_model_server_is_down_the_notice_is_in_the_visitors_language(shop, settings):
    settings.TGI_URL = f"http://127.0.0.1:{free_port()}"

    message, _ = answered(ask(shop, "How do I return a parcel?", language="de"))

    assert message.text.startswith(ANSWER_TEXTS["model_down_notice"]["de"] + "\n\nAus unserer Dokumentation:")


def test_when_the_model_server_is_down_and_nothing_is_relevant_it_says_it_cannot_answer_now(shop, settings):
    settings.TGI_URL = f"http://127.0.0.1:{free_port()}"

    message, _ = answered(ask(shop, "What is the airspeed velocity of an unladen swallow?"))

    assert message.text == ANSWER_TEXTS["model_down_no_passages"]["en"]
    assert message.citations == []


def test_when_the_model_fails_mid_answer_the_text_so_far_stays_and_the_documentation_follows(shop, sim):
    sim.configure(script_text="Parcels to Norway take about a week or so [1].", fault="error_midstream",
                  fault_after_tokens=3)  # fmt: skip

    message, events = answered(ask(shop, "How long does delivery to Norway take?"))

    partial = "".join(event["text"] for event in events if event["type"] == "chat.token")
    assert partial and message.text.startswith(partial)
    assert f"\n\n{FROM_OUR_DOCUMENTATION}\n\n" in message.text
    assert "| Norway | 6-8 business days |" in message.text
    assert message.status == Message.Status.ERROR
    error = events[-1]
    assert (error["type"], error["code"], error["message"]) == (
        "chat.error",
        "answer_failed",
        ANSWER_TEXTS["answer_cut_off"]["en"],
    )
    assert "Shipping › Delivery times" in [citation["title"] for citation in message.citations]


# --- the trace: which passages were sent, and why the others were not ------------------------------------------


def test_the_trace_lists_every_ranked_passage_as_sent_or_cut_with_the_reason(shop, sim):
    message, _ = answered(ask(shop, "How long does delivery to Norway take?"))

    trace = message.retrieved
    prompt = sim.generation_requests()[-1]["body"]["messages"][0]["content"]
    sent = [p for p in trace if p["sent"]]
    assert sent and trace[0]["sent"] is True and trace[0]["cut"] is None, "the best passage is sent"
    assert all(p["cut"] is None for p in sent)
    assert prompt.count("<<<PASSAGE [") == len(sent)
    hours = next(p for p in trace if p["title"] == "Opening hours")
    assert (hours["sent"], hours["cut"]) == (False, "below_relevance")
    assert {p["context"] for p in trace} == {"none"}, "a first question, searched on its own"


def test_the_bots_maximum_bounds_the_passages_sent(shop, sim):
    shop.max_passages = 1
    shop.save()

    message, _ = answered(ask(shop, "How long does delivery to Norway take, and how do I return a parcel?"))

    assert [p["sent"] for p in message.retrieved] == [True]
    assert sim.generation_requests()[-1]["body"]["messages"][0]["content"].count("<<<PASSAGE [") == 1


def test_the_trace_marks_passages_the_prompt_budget_left_out(shop, sim):
    for country in ("Norway", "Sweden", "Denmark"):
        page_add(
            shop,
            title=f"Delivery to {country}",
            url=f"https://www.shop.test/help/{country.lower()}",
            text=" ".join(
                f"A parcel to {country} sent on a {day} arrives after six to eight business days, tracked all the way."
                for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
            ),
        )
    shop.max_new_tokens = 64
    shop.save()
    sim.configure(max_input_tokens=536, max_total_tokens=600)

    message, _ = answered(ask(shop, "How long does delivery to Norway, Sweden or Denmark take?"))

    prompt = sim.generation_requests()[-1]["body"]["messages"][0]["content"]
    sent = [p for p in message.retrieved if p["sent"]]
    over_budget = [p for p in message.retrieved if p["cut"] == "over_budget"]
    assert over_budget, "the small model leaves out at least one chosen passage"
    assert sent, "the best ones fit"
    assert prompt.count("<<<PASSAGE [") == len(sent)
    assert all(p["title"] not in prompt for p in over_budget if p["title"] not in {q["title"] for q in sent})


# --- the model's name ------------------------------------------------------------------------------------------


def test_with_model_name_set_a_server_that_wants_the_real_name_answers(shop, sim, settings):
    sim.configure(required_model="llama3.2:3b", script_text="In six to eight business days [1].")
    settings.MODEL_NAME = "llama3.2:3b"

    message, _ = answered(ask(shop, "How long does delivery to Norway take?"))

    assert message.status == Message.Status.COMPLETE
    assert message.text == "In six to eight business days [1]."
    assert sim.generation_requests()[-1]["body"]["model"] == "llama3.2:3b"


def test_with_the_default_model_name_such_a_server_refuses_and_the_visitor_gets_the_notice(shop, sim):
    sim.configure(required_model="llama3.2:3b")

    message, _ = answered(ask(shop, "How long does delivery to Norway take?"))

    request = sim.generation_requests()[-1]
    assert (request["body"]["model"], request["status"]) == ("tgi", 404)
    assert message.status == Message.Status.RETRIEVAL_ONLY
    assert message.text.startswith(MODEL_DOWN_NOTICE)


def test_a_bots_adapter_is_sent_instead_of_the_model_name(shop, sim, settings):
    settings.MODEL_NAME = "llama3.2:3b"
    shop.adapter_id = "shop-voice"
    shop.save()

    answered(ask(shop, "How long does delivery to Norway take?"))

    assert sim.generation_requests()[-1]["body"]["model"] == "shop-voice"


# --- a first question costs what it did ------------------------------------------------------------------------


def test_a_first_question_runs_the_statements_of_a_plain_search_and_no_more(shop, sim):
    """The conversation-aware search adds nothing for a question without earlier messages: the pipeline's statements
    on the knowledge base's tables are exactly those of chunk_search for the same question."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from knowledge.embeddings import get_embedder
    from knowledge.retrieval import chunk_search

    question = "How long does delivery to Norway take?"
    embedded = get_embedder(None).embed_query_soon(question).result()
    with CaptureQueriesContext(connection) as plain:
        chunk_search(
            knowledge_base_id=shop.knowledge_base_id,
            query=question,
            k=shop.max_passages,
            embedding=embedded.vector,
            query_tokens=embedded.tokens,
        )
    message = ask(shop, question)
    with CaptureQueriesContext(connection) as pipeline:
        answered(message)

    def on_the_knowledge_base(queries) -> list[str]:
        return [q["sql"] for q in queries if "knowledge_chunk" in q["sql"] or "knowledge_term" in q["sql"]]

    searched = on_the_knowledge_base(plain.captured_queries)
    assert searched, "the plain search reads the chunks"
    assert len(on_the_knowledge_base(pipeline.captured_queries)) == len(searched)
    assert {p["context"] for p in message.__class__.objects.get(id=message.id).retrieved} == {"none"}
