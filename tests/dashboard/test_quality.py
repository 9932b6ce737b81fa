"""Unanswered questions, their grouping, and approved answers (real embeddings, real pgvector)."""

import pytest
from django.urls import reverse

from chatbot.answers import approved
from chatbot.dashboard import quality
from chatbot.models import ApprovedAnswer, Message
from knowledge.models import Source

from .conftest import logged_in


def _exchange(conversation, question: str, **answer) -> Message:
    visitor = Message.objects.create(conversation=conversation, role="visitor", text=question)
    fields = {"status": "complete", "text": "…", "retrieved": [{"similarity": 0.62, "title": "Shipping"}], **answer}
    return Message.objects.create(conversation=conversation, role="bot", in_reply_to=visitor, **fields)


@pytest.fixture
def password_answer(bot):
    return approved.approved_answer_add(
        bot=bot,
        question="How do I reset my password?",
        answer="Click **Forgot password** on the sign-in page; the link arrives within a minute.",
        add_faq=False,
    )


@pytest.mark.parametrize(
    "question",
    ["How do I reset my password?", "how do i reset my password", "I forgot my password, how can I change it?"],
)
def test_a_close_question_gets_the_approved_answer(bot, password_answer, question):
    found = approved.approved_answer_for(bot=bot, question=question)
    assert found == password_answer
    assert found.similarity >= approved.APPROVED_ANSWER_MIN_SIMILARITY


@pytest.mark.parametrize(
    "question", ["How do I delete my account?", "Do you ship to Norway?", "What are your opening hours?"]
)
def test_an_unrelated_question_does_not(bot, password_answer, question):
    assert approved.approved_answer_for(bot=bot, question=question) is None


def test_a_near_but_different_question_does_not(bot):
    approved.approved_answer_add(
        bot=bot, question="Do you have a student discount?", answer="Yes: 20% with a student card.", add_faq=False
    )
    assert approved.approved_answer_for(bot=bot, question="Is there a discount for students?") is not None
    assert approved.approved_answer_for(bot=bot, question="Do you have a discount for teachers?") is None


def test_another_bots_approved_answers_are_not_used(bot, other_bot, password_answer):
    assert approved.approved_answer_for(bot=other_bot, question="How do I reset my password?") is None


def test_using_an_approved_answer_counts_it(password_answer):
    approved.approved_answer_use(approved_answer=password_answer)
    password_answer.refresh_from_db()
    assert password_answer.times_used == 1


def test_it_finds_the_questions_the_bot_could_not_answer(bot, conversation):
    _exchange(conversation, "Do you ship to Norway?", status="retrieval_only", retrieved=[])
    _exchange(conversation, "Can I pay in bitcoin?", finish_reason="no_relevant_passages", retrieved=[])
    _exchange(conversation, "Do you sell gift cards?", retrieved=[{"similarity": 0.12}])
    _exchange(conversation, "Is it waterproof?", feedback="down")
    _exchange(conversation, "How long is delivery?")  # answered well
    _exchange(conversation, "Reset my password", finish_reason="approved_answer", retrieved=[])
    found = {q.text: q.reason for q in quality.unanswered_questions(bots=[bot])}
    assert found == {
        "Do you ship to Norway?": "no_passage",
        "Can I pay in bitcoin?": "no_passage",
        "Do you sell gift cards?": "no_passage",
        "Is it waterproof?": "thumbs_down",
    }


def test_the_question_before_asking_for_a_person_is_unanswered(bot, conversation):
    from django.utils import timezone

    _exchange(conversation, "Can you fix my broken zipper?")
    Message.objects.create(conversation=conversation, role="visitor", text="I want to talk to a human")
    conversation.handoff_requested_at = timezone.now()
    conversation.save()
    found = quality.unanswered_questions(bots=[bot])
    assert [(q.text, q.reason) for q in found] == [("Can you fix my broken zipper?", "asked_human")]


def test_similar_questions_are_grouped_and_the_biggest_group_comes_first(bot, conversation):
    for question in [
        "How long does shipping take?",
        "Do you accept PayPal?",
        "How many days does delivery take?",
        "How long will it take for my order to arrive?",
        "Can I pay with PayPal?",
        "What are your opening hours?",
    ]:
        _exchange(conversation, question, status="retrieval_only")
    groups = quality.unanswered_groups(bots=[bot])
    as_sets = [{q.text for q in group.questions} for group in groups]
    assert as_sets[0] == {
        "How long does shipping take?",
        "How many days does delivery take?",
        "How long will it take for my order to arrive?",
    }  # fmt: skip
    assert {"Do you accept PayPal?", "Can I pay with PayPal?"} in as_sets
    assert {"What are your opening hours?"} in as_sets
    assert len(groups) == 3


def test_an_approved_answer_takes_its_questions_off_the_list(bot, conversation):
    _exchange(conversation, "How do I reset my password?", status="retrieval_only")
    _exchange(conversation, "What are your opening hours?", status="retrieval_only")
    approved.approved_answer_add(bot=bot, question="How do I reset my password?", answer="Use the link.", add_faq=False)
    assert [g.question for g in quality.unanswered_groups(bots=[bot])] == ["What are your opening hours?"]


def test_the_unanswered_filter_of_the_conversation_list(bot, agent, conversation):
    from chatbot.chat.conversations import conversation_resume_or_start

    _exchange(conversation, "Can I pay in bitcoin?", retrieved=[{"similarity": 0.1}])
    fine = conversation_resume_or_start(bot=bot, visitor_id="visitor-2")
    _exchange(fine, "How long is delivery?")
    page = logged_in(agent).get(reverse("dashboard:conversations"), {"unanswered": "1"}).content.decode()
    assert "Can I pay in bitcoin?" in page and "How long is delivery?" not in page


def test_add_an_answer_from_the_quality_page(bot, agent, conversation, django_capture_on_commit_callbacks):
    _exchange(conversation, "Do you ship to Norway?", status="retrieval_only")
    client = logged_in(agent)
    page = client.get(reverse("dashboard:quality")).content.decode()
    assert "Do you ship to Norway?" in page

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("dashboard:approved-answer-create"),
            {"bot": bot.slug, "question": "Do you ship to Norway?", "answer": "Yes, in 3–5 days.", "add_faq": "on"},
        )
    assert response.status_code == 302
    approved = ApprovedAnswer.objects.get(bot=bot)
    assert (approved.answer, approved.created_by) == ("Yes, in 3–5 days.", agent)
    faq = Source.objects.get(knowledge_base=bot.knowledge_base, kind="faq")
    assert (faq.question, faq.answer) == ("Do you ship to Norway?", "Yes, in 3–5 days.")
    assert len(callbacks) == 1  # its ingestion, queued once committed
    assert (
        "Do you ship to Norway?"
        not in client.get(reverse("dashboard:quality")).content.decode().split("Approved answers")[0]
    )


def test_an_agent_cannot_add_answers_to_another_bot(other_agent, bot):
    response = logged_in(other_agent).post(
        reverse("dashboard:approved-answer-create"), {"bot": bot.slug, "question": "Q?", "answer": "A."}
    )
    assert response.status_code == 404
    assert not ApprovedAnswer.objects.exists()


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "https:evil.example", "javascript:alert(1)",
     " https://evil.example", "\thttps://evil.example"],
)  # fmt: skip
def test_deleting_an_approved_answer_never_redirects_to_another_site(bot, agent, password_answer, target):
    response = logged_in(agent).post(
        reverse("dashboard:approved-answer-delete", args=[password_answer.id]), {"next": target}
    )
    assert (response.status_code, response["Location"]) == (302, reverse("dashboard:quality"))
    assert not ApprovedAnswer.objects.exists()


def test_deleting_an_approved_answer_goes_back_to_the_page_it_was_on(bot, agent, password_answer):
    page = reverse("dashboard:bot-knowledge", args=[bot.slug])
    response = logged_in(agent).post(
        reverse("dashboard:approved-answer-delete", args=[password_answer.id]), {"next": page}
    )
    assert response["Location"] == page


# --- answers from the documentation (no model, or the model failed) ---

EXTRACTIVE_CITATIONS = [{"n": 1, "title": "Shipping › Norway", "url": "https://www.acme.test/shipping#norway"}]


def test_an_answer_from_the_documentation_is_answered_when_it_cites_a_relevant_passage_and_a_gap_when_not(
    bot, conversation
):
    _exchange(
        conversation,
        "Do you ship to Norway?",
        status="retrieval_only",
        finish_reason="not_configured",
        text="From our documentation:\n\nWe ship to Norway. [1]",
        citations=EXTRACTIVE_CITATIONS,
        retrieved=[{"similarity": 0.71, "sent": True, "cut": None}, {"similarity": 0.2, "sent": False}],
    )
    _exchange(
        conversation,
        "Can I pay in bitcoin?",
        status="retrieval_only",
        finish_reason="not_configured",
        text="I couldn't find anything in our documentation that answers this.",
        retrieved=[{"similarity": 0.18, "sent": False, "cut": "below_relevance"}],
    )
    _exchange(
        conversation,
        "Do you sell gift cards?",
        status="retrieval_only",
        finish_reason="unreachable",
        citations=EXTRACTIVE_CITATIONS,
        retrieved=[{"similarity": 0.12, "sent": False, "cut": "below_relevance"}],
    )

    found = {q.text: q.reason for q in quality.unanswered_questions(bots=[bot])}

    assert found == {"Can I pay in bitcoin?": "no_passage", "Do you sell gift cards?": "no_passage"}


def test_the_quality_page_and_analytics_count_the_same_answers_from_the_documentation_as_gaps(bot, conversation):
    from chatbot.dashboard.selectors import analytics
    from chatbot.models import Bot, Conversation

    _exchange(
        conversation,
        "Do you ship to Norway?",
        status="retrieval_only",
        citations=EXTRACTIVE_CITATIONS,
        retrieved=[{"similarity": 0.71, "sent": True, "cut": None}],
    )
    _exchange(conversation, "Can I pay in bitcoin?", status="retrieval_only", retrieved=[{"similarity": 0.18}])
    _exchange(conversation, "Do you sell gift cards?", retrieved=[{"similarity": 0.1}])
    _exchange(conversation, "How long is delivery?")

    gaps_on_the_quality_page = len(quality.unanswered_questions(bots=[bot]))
    gaps_in_analytics = analytics(bots=Bot.objects.filter(id=bot.id)).totals["unanswered_questions"]

    assert gaps_on_the_quality_page == gaps_in_analytics == 2
    assert Conversation.objects.filter(quality.unanswered_filter()).filter(id=conversation.id).exists()
