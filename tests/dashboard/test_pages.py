"""What the pages show: the transcript with its trace, bot settings, knowledge, analytics charts."""

import pytest
from django.urls import reverse

from chatbot.dashboard import charts
from chatbot.models import Bot, Message
from knowledge.models import Source

from .conftest import logged_in


@pytest.fixture
def answered(conversation):
    question = Message.objects.create(conversation=conversation, role="visitor", text="How long does shipping take?")
    return Message.objects.create(
        conversation=conversation,
        role="bot",
        in_reply_to=question,
        text="Two to four days [1].",
        citations=[{"n": 1, "title": "Shipping times", "url": "https://www.acme.test/shipping"}],
        feedback="down",
        retrieved=[
            {
                "title": "Shipping times",
                "url": "https://www.acme.test/shipping",
                "heading_path": ["Europe"],
                "score": 0.03279,
                "similarity": 0.7421,
                "text": "Delivery takes two to four business days.",
            },
        ],
        prompt=[{"role": "system", "content": "You are Acme's assistant."}, {"role": "user", "content": "How long…"}],
        model="meta-llama/Llama-3.1-8B-Instruct",
        adapter_id="acme-voice-v3",
        prompt_tokens=412,
        completion_tokens=37,
        ttft_ms=183.0,
        total_ms=1290.0,
        finish_reason="stop",
    )


def test_the_transcript_shows_citations_feedback_origin_and_the_trace(agent, conversation, answered):
    page = logged_in(agent).get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    for expected in [
        "https://www.acme.test/pricing", "https://search.test/", "Shipping times", "Not helpful", "0.7421", "0.03279",
        "Delivery takes two to four business days.", "You are Acme&#x27;s assistant.",
        "meta-llama/Llama-3.1-8B-Instruct",
        "acme-voice-v3", "412 / 37", "183 ms", "1290 ms",
    ]:  # fmt: skip
        assert expected in page, expected


def test_the_trace_shows_the_rerankers_scores_only_when_a_reranker_ordered_the_passages(agent, conversation, answered):
    url = reverse("dashboard:transcript", args=[conversation.id])
    assert "Reranker" not in logged_in(agent).get(url).content.decode()

    answered.retrieved = [{**answered.retrieved[0], "rerank_score": 0.98125}]
    answered.save(update_fields=["retrieved"])

    page = logged_in(agent).get(url).content.decode()
    assert "Reranker" in page and "0.98125" in page


def test_the_trace_says_which_passages_were_sent_to_the_model_and_why_the_others_were_not(
    agent, conversation, answered
):
    passage = {k: v for k, v in answered.retrieved[0].items() if k != "text"}
    answered.retrieved = [
        {**passage, "text": "Sent passage.", "sent": True, "cut": None, "context": "follow_up"},
        {**passage, "text": "Weak passage.", "sent": False, "cut": "below_relevance", "context": "follow_up"},
        {**passage, "text": "Too long passage.", "sent": False, "cut": "over_budget", "context": "follow_up"},
    ]
    answered.save(update_fields=["retrieved"])

    page = logged_in(agent).get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()

    assert "Searched as a follow-up of the earlier messages." in page
    rows = page.split('class="passage-sent">')[1:]
    assert [row.split("</td>")[0] for row in rows] == [
        "sent",
        "cut: not relevant enough",
        "cut: did not fit the prompt",
    ]


def test_search_finds_conversations_by_message_text(agent, conversation, answered):
    client = logged_in(agent)
    assert conversation.id in client.get(reverse("dashboard:conversations"), {"q": "shipping"}).content.decode()
    assert conversation.id not in client.get(reverse("dashboard:conversations"), {"q": "bitcoin"}).content.decode()
    assert (
        conversation.id in client.get(reverse("dashboard:conversations"), {"negative_feedback": "1"}).content.decode()
    )
    assert conversation.id not in client.get(reverse("dashboard:conversations"), {"handed_off": "1"}).content.decode()


def test_an_admin_edits_a_bot_and_invalid_settings_are_refused(admin, bot):
    client = logged_in(admin)
    form = {
        "name": "Acme Support", "slug": "acme", "persona": "Be brief.", "greeting": "Hi!", "color": "#112233",
        "language": "en", "allowed_origins": "https://www.acme.test\nhttps://shop.acme.test", "temperature": "0.4",
        "max_new_tokens": "300", "stop_sequences": "", "business_hours": "", "lead_form": "",
        "lead_retention_days": "365", "adapter_id": "acme-v2",
    }  # fmt: skip
    response = client.post(reverse("dashboard:bot-edit", args=["acme"]), form)
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.allowed_origins == ["https://www.acme.test", "https://shop.acme.test"]
    assert (bot.adapter_id, bot.color, bot.temperature) == ("acme-v2", "#112233", 0.4)

    bad = {**form, "business_hours": '{"days": {"mon": ["18:00", "09:00"]}}', "lead_form": "{not json"}
    response = client.post(reverse("dashboard:bot-edit", args=["acme"]), bad)
    assert response.status_code == 200
    assert b"is not before" in response.content and b"Not valid JSON" in response.content
    page = client.get(reverse("dashboard:bot-edit", args=["acme"])).content.decode()
    assert bot.public_id in page and "widget.js" in page  # the snippet and the preview


def test_an_admin_creates_a_bot(admin):
    form = {"name": "Shop", "slug": "shop", "color": "#4f46e5", "language": "en", "temperature": "0.3",
            "max_new_tokens": "512", "lead_retention_days": "365"}  # fmt: skip
    response = logged_in(admin).post(reverse("dashboard:bot-new"), form)
    assert response.status_code == 302
    assert Bot.objects.get(slug="shop").knowledge_base is not None


def test_an_admin_adds_resyncs_and_deletes_sources(admin, bot, django_capture_on_commit_callbacks):
    client = logged_in(admin)
    url = reverse("dashboard:bot-knowledge", args=["acme"])
    with django_capture_on_commit_callbacks() as queued:
        client.post(url, {"kind": "faq", "question": "Opening hours?", "answer": "9 to 6."})
        client.post(url, {"kind": "url", "url": "https://www.acme.test/help"})
        client.post(url, {"kind": "sitemap", "url": "https://www.acme.test/sitemap.xml", "resync_every_hours": "24"})
    assert len(queued) == 3
    kinds = set(Source.objects.filter(knowledge_base=bot.knowledge_base).values_list("kind", flat=True))
    assert kinds == {"faq", "url", "sitemap"}
    progress = client.get(reverse("dashboard:knowledge-progress", args=["acme"])).json()
    assert len(progress["sources"]) == 3
    source = Source.objects.get(kind="url")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        client.post(reverse("dashboard:source-resync", args=["acme", source.id]))
    assert len(queued) == 1
    client.post(reverse("dashboard:source-delete", args=["acme", source.id]))
    assert not Source.objects.filter(id=source.id).exists()


def test_analytics_draws_charts(agent, answered):
    page = logged_in(agent).get(reverse("dashboard:analytics")).content.decode()
    assert page.count("<svg") == 6
    assert "Conversations per day" in page and "Tokens generated per bot" in page


def test_charts_escape_labels_and_scale():
    svg = charts.bar_chart(title="<b>", labels=["<x>", "b"], series=[charts.Series("s", [3, 7], "#000")])
    assert "<b>" not in svg and "&lt;x&gt;" in svg and svg.count("<rect") == 2
    assert 'height="0' not in svg
    line = charts.line_chart(title="t", labels=["a", "b", "c"], series=[charts.Series("m", [100, None, 300], "#000")])
    assert line.count("<circle") == 2


def test_the_most_passages_sent_to_the_model_is_a_bot_setting_between_1_and_20(admin, bot):
    client = logged_in(admin)
    form = {
        "name": "Acme Support", "slug": "acme", "color": "#112233", "language": "en", "temperature": "0.3",
        "max_new_tokens": "512", "lead_retention_days": "365", "max_passages": "12",
    }  # fmt: skip
    assert 'name="max_passages"' in client.get(reverse("dashboard:bot-edit", args=["acme"])).content.decode()

    assert client.post(reverse("dashboard:bot-edit", args=["acme"]), form).status_code == 302
    bot.refresh_from_db()
    assert bot.max_passages == 12
    for refused in ("0", "21"):
        response = client.post(reverse("dashboard:bot-edit", args=["acme"]), {**form, "max_passages": refused})
        assert response.status_code == 200
    bot.refresh_from_db()
    assert bot.max_passages == 12
