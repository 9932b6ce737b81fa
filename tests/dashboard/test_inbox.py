"""The inbox: pages of any number of conversations (a cursor, not an offset), search, the "mine", "unassigned" and
"waiting for a human" tabs, assigning to a colleague, resolving, internal notes, saved replies; and the live list
hearing of it over the staff websocket."""

import json
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone

from chatbot.chat import staff as chat_staff
from chatbot.chat.conversations import conversation_history, conversation_resume_or_start, message_receive
from chatbot.dashboard import inbox, selectors
from chatbot.dashboard.permissions import bots_visible
from chatbot.models import Conversation, ConversationNote, Lead, Message, SavedReply

from .conftest import chat_socket, logged_in, receive_until, staff_socket


def visit(bot, visitor_id: str, text: str, *, minutes_ago: float = 0) -> Conversation:
    conversation = conversation_resume_or_start(bot=bot, visitor_id=visitor_id)
    message_receive(conversation=conversation, text=text, answer=False)
    if minutes_ago:
        when = timezone.now() - timedelta(minutes=minutes_ago)
        Conversation.objects.filter(id=conversation.id).update(last_message_at=when)
    conversation.refresh_from_db()
    return conversation


def page_ids(user, bot, **query) -> tuple[list[str], str]:
    filters = selectors.ConversationFilters.from_query(query)
    page = selectors.conversation_page(
        bots=bots_visible(user), filters=filters, user=user, cursor=query.get("after", ""), limit=query.get("limit", 50)
    )
    return [c.id for c in page.conversations], page.next_cursor


# --- pages and search ---


def test_it_pages_through_every_conversation_without_skipping_or_repeating_one(admin, bot):
    # 130 conversations, many sharing a last activity to the microsecond: the cursor orders ties by id.
    same_moment = timezone.now() - timedelta(hours=1)
    for n in range(130):
        conversation = visit(bot, f"v{n}", f"question {n}")
        Conversation.objects.filter(id=conversation.id).update(
            last_message_at=same_moment if n % 3 == 0 else same_moment + timedelta(seconds=n)
        )
    expected = list(Conversation.objects.order_by("-last_message_at", "-id").values_list("id", flat=True))

    seen, cursor, pages = [], "", 0
    while True:
        ids, cursor = page_ids(admin, bot, after=cursor, limit=50)
        seen += ids
        pages += 1
        if not cursor:
            break

    assert pages == 3
    assert seen == expected


def test_a_new_conversation_does_not_shift_the_next_page(admin, bot):
    for n in range(6):
        visit(bot, f"v{n}", f"question {n}", minutes_ago=60 - n)
    first, cursor = page_ids(admin, bot, limit=3)
    visit(bot, "newcomer", "I just arrived")  # newest of all: on page one if reloaded, never on page two
    second, _ = page_ids(admin, bot, after=cursor, limit=3)
    assert not set(first) & set(second)
    assert len(first + second) == 6


def test_a_page_link_that_does_not_decode_shows_the_first_page_with_a_message(admin, bot):
    visit(bot, "v1", "hello there friend")
    response = logged_in(admin).get(reverse("dashboard:conversations"), {"after": "not-a-cursor!!"})
    assert response.status_code == 200
    assert "That page link is not valid any more" in response.content.decode()
    assert "hello there friend" in response.content.decode()


def test_the_list_links_to_the_older_conversations(admin, bot):
    for n in range(55):
        visit(bot, f"v{n}", f"question number {n}", minutes_ago=100 - n)
    client = logged_in(admin)
    first = client.get(reverse("dashboard:conversations")).content.decode()
    assert "question number 54" in first and "question number 4<" not in first
    link = re.search(r'<a href="([^"]+)" id="next-page"', first).group(1).replace("&amp;", "&")
    second = client.get(reverse("dashboard:conversations") + link).content.decode()
    assert "question number 4<" in second and "question number 54" not in second
    assert "← Newest" in second


def test_search_finds_words_in_any_message_a_visitor_id_and_a_leads_email(admin, bot):
    norway = visit(bot, "visitor-norway", "Do you ship to Norway?")
    refund = visit(bot, "visitor-refund", "I want a refund for order 99")
    Lead.objects.create(bot=bot, conversation=refund, email="ada@example.com", name="Ada Lovelace")

    assert page_ids(admin, bot, q="NORWAY")[0] == [norway.id]
    assert page_ids(admin, bot, q="visitor-refund")[0] == [refund.id]
    assert page_ids(admin, bot, q="ada@example")[0] == [refund.id]
    assert page_ids(admin, bot, q=refund.id)[0] == [refund.id]
    assert page_ids(admin, bot, q="bitcoin")[0] == []


def test_the_search_uses_the_trigram_index(admin, bot):
    from django.db import connection

    visit(bot, "v1", "Do you ship to Norway?")
    filters = selectors.ConversationFilters.from_query({"q": "norway"})
    sql, params = Message.objects.filter(text__icontains=filters.q).values("conversation_id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner show the index it can use
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "message_text_trigram" in plan


# --- tabs: mine, unassigned, waiting for a human; resolved ---


def test_the_tabs_show_mine_unassigned_and_waiting_for_a_human(agent, admin, bot):
    mine = visit(bot, "v-mine", "Where is my parcel?")
    theirs = visit(bot, "v-theirs", "Can I change my address?")
    nobodys = visit(bot, "v-nobody", "Do you ship to Norway?")
    waiting = visit(bot, "v-waiting", "Talk to a human please")
    Conversation.objects.filter(id=waiting.id).update(handoff_requested_at=timezone.now())
    inbox.conversation_assign(conversation=mine, assignee_id=agent.id)
    inbox.conversation_assign(conversation=theirs, assignee_id=admin.id)

    assert page_ids(agent, bot, view="mine")[0] == [mine.id]
    assert set(page_ids(agent, bot, view="unassigned")[0]) == {nobodys.id, waiting.id}
    assert page_ids(agent, bot, view="waiting")[0] == [waiting.id]

    # A staff reply after the request: nobody is waiting any more.
    chat_staff.conversation_take_over(conversation=waiting, user=agent)
    assert page_ids(agent, bot, view="waiting")[0] == [waiting.id], "taken over, but nobody wrote yet"
    chat_staff.staff_message_send(conversation=waiting, user=agent, text="Hi, I'm here.")
    assert page_ids(agent, bot, view="waiting")[0] == []


def test_a_resolved_conversation_leaves_the_open_tabs_until_the_visitor_writes_again(agent, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    inbox.conversation_assign(conversation=conversation, assignee_id=agent.id)

    inbox.conversation_resolve(conversation=conversation, user=agent)

    assert page_ids(agent, bot, view="mine")[0] == []
    assert page_ids(agent, bot, view="mine", status="resolved")[0] == [conversation.id]
    assert page_ids(agent, bot)[0] == [conversation.id], "All shows open and resolved ones"
    conversation.refresh_from_db()
    assert (conversation.resolved_by, conversation.resolved_at is not None) == (agent, True)

    message_receive(conversation=conversation, text="It still has not arrived", answer=False)

    conversation.refresh_from_db()
    assert conversation.resolved_at is None
    assert page_ids(agent, bot, view="mine")[0] == [conversation.id]


def test_the_resolve_and_reopen_buttons(agent, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    client = logged_in(agent)
    client.post(reverse("dashboard:resolve", args=[conversation.id]))
    conversation.refresh_from_db()
    assert conversation.resolved_at is not None
    page = client.get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    assert 'id="reopen"' in page
    client.post(reverse("dashboard:resolve", args=[conversation.id]), {"reopen": "1"})
    conversation.refresh_from_db()
    assert conversation.resolved_at is None


# --- assigning ---


def test_it_assigns_to_a_colleague_who_sees_the_bot_and_refuses_one_who_does_not(agent, other_agent, admin, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    client = logged_in(admin)

    client.post(reverse("dashboard:assign", args=[conversation.id]), {"assignee": str(agent.id)})
    conversation.refresh_from_db()
    assert conversation.assigned_to == agent

    response = client.post(
        reverse("dashboard:assign", args=[conversation.id]), {"assignee": str(other_agent.id)}, follow=True
    )
    assert "cannot see this bot" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.assigned_to == agent

    client.post(reverse("dashboard:assign", args=[conversation.id]), {"assignee": "me"})
    conversation.refresh_from_db()
    assert conversation.assigned_to == admin
    client.post(reverse("dashboard:assign", args=[conversation.id]), {"assignee": ""})
    conversation.refresh_from_db()
    assert conversation.assigned_to is None


def test_taking_over_an_unassigned_conversation_makes_it_mine_and_an_assigned_one_stays_with_its_colleague(
    agent, admin, bot
):
    nobodys = visit(bot, "v-nobody", "Talk to a human please")
    admins = visit(bot, "v-admins", "Can I change my address?")
    inbox.conversation_assign(conversation=admins, assignee_id=admin.id)

    chat_staff.conversation_take_over(conversation=nobodys, user=agent)
    chat_staff.conversation_take_over(conversation=admins, user=agent)

    assert page_ids(agent, bot, view="mine")[0] == [nobodys.id]
    admins.refresh_from_db()
    assert admins.assigned_to == admin


def test_the_transcript_offers_the_colleagues_who_see_the_bot(agent, other_agent, admin, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    page = logged_in(agent).get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    options = page.split('id="assignee"', 1)[1].split("</select>", 1)[0]
    assert "Alan (you)" in options and "Ada" in options
    assert "edsger" not in options  # another bot's agent


def test_an_agent_of_another_bot_cannot_assign_resolve_or_note(other_agent, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    client = logged_in(other_agent)
    for name, data in [("assign", {"assignee": "me"}), ("resolve", {}), ("note-add", {"text": "hi"})]:
        assert client.post(reverse(f"dashboard:{name}", args=[conversation.id]), data).status_code == 404
    conversation.refresh_from_db()
    assert (conversation.assigned_to, conversation.resolved_at, conversation.notes.count()) == (None, None, 0)


@pytest.mark.django_db(transaction=True)
async def test_assigning_and_resolving_update_the_live_list_of_every_dashboard(agent, admin, bot):
    conversation = await database_sync_to_async(visit)(bot, "v1", "Where is my parcel?")
    socket = await staff_socket(admin)
    assert (await socket.connect())[0]

    await database_sync_to_async(inbox.conversation_assign)(conversation=conversation, assignee_id=agent.id)
    row = (await receive_until(socket, "conversation"))["conversation"]
    assert (row["id"], row["assigned_to"], row["assigned_to_id"], row["resolved"]) == (
        conversation.id, "Alan", agent.id, False,
    )  # fmt: skip

    await database_sync_to_async(inbox.conversation_resolve)(conversation=conversation, user=admin)
    row = (await receive_until(socket, "conversation"))["conversation"]
    assert row["resolved"] is True and row["waiting"] is False
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_request_for_a_person_shows_as_waiting_in_the_live_list(agent, bot):
    socket = await staff_socket(agent)
    assert (await socket.connect())[0]
    visitor = chat_socket(bot)
    await visitor.connect()
    await visitor.send_json_to({"type": "hello"})
    await receive_until(visitor, "ready")

    await visitor.send_json_to({"type": "handoff_request"})

    row = (await receive_until(socket, "conversation", timeout=10))["conversation"]
    assert row["handoff_requested"] is True and row["waiting"] is True
    await visitor.disconnect()
    await socket.disconnect()


# --- internal notes ---


def test_notes_are_for_staff_and_never_reach_the_visitor(agent, bot):
    conversation = visit(bot, "v1", "Where is my parcel?")
    client = logged_in(agent)

    client.post(reverse("dashboard:note-add", args=[conversation.id]), {"text": "Customer since 2019: be generous."})

    note = ConversationNote.objects.get()
    assert (note.author, note.text, note.conversation_id) == (
        agent,
        "Customer since 2019: be generous.",
        conversation.id,
    )
    page = client.get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    assert "Customer since 2019: be generous." in page
    history = conversation_history(conversation=conversation)
    assert all("generous" not in message["text"] for message in history)
    assert list(conversation.messages.values_list("text", flat=True)) == ["Where is my parcel?"]

    response = client.post(reverse("dashboard:note-add", args=[conversation.id]), {"text": "  "}, follow=True)
    assert "Write a note" in response.content.decode()
    assert ConversationNote.objects.count() == 1


@pytest.mark.django_db(transaction=True)
async def test_a_note_written_while_the_visitor_chats_sends_them_nothing(agent, bot):
    visitor = chat_socket(bot)
    await visitor.connect()
    await visitor.send_json_to({"type": "hello"})
    ready = await receive_until(visitor, "ready")
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])

    await database_sync_to_async(inbox.note_add)(conversation=conversation, user=agent, text="VIP, be quick")

    assert await visitor.receive_nothing(timeout=0.5)
    await visitor.send_json_to({"type": "hello", "visitor_token": ready["visitor_token"]})
    again = await receive_until(visitor, "ready")
    assert "VIP" not in json.dumps(again)
    await visitor.disconnect()


# --- saved replies ---


def test_staff_save_replies_and_the_takeover_box_gets_them(agent, admin, bot, other_bot):
    agent_client, admin_client = logged_in(agent), logged_in(admin)
    admin_client.post(reverse("dashboard:saved-replies"), {"bot": "", "shortcut": "/Thanks", "text": "Thanks a lot!"})
    agent_client.post(
        reverse("dashboard:saved-replies"), {"bot": bot.slug, "shortcut": "refund", "text": "Refunds take 5 days."}
    )
    # The bot's own reply wins over the one for every bot with the same shortcut.
    agent_client.post(reverse("dashboard:saved-replies"), {"bot": bot.slug, "shortcut": "thanks", "text": "Merci!"})
    admin_client.post(
        reverse("dashboard:saved-replies"), {"bot": other_bot.slug, "shortcut": "globex", "text": "Globex only"}
    )
    # Saving an existing shortcut replaces its text.
    agent_client.post(
        reverse("dashboard:saved-replies"), {"bot": bot.slug, "shortcut": "refund", "text": "Refunds take 3 days."}
    )

    assert inbox.saved_replies_for(bot=bot) == [
        {"shortcut": "refund", "text": "Refunds take 3 days."},
        {"shortcut": "thanks", "text": "Merci!"},
    ]
    conversation = visit(bot, "v1", "Where is my parcel?")
    chat_staff.conversation_take_over(conversation=conversation, user=agent)
    page = agent_client.get(reverse("dashboard:transcript", args=[conversation.id])).content.decode()
    data = page.split('<script id="saved-replies" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data) == inbox.saved_replies_for(bot=bot)


def test_saved_replies_are_checked(agent, bot, other_bot):
    client = logged_in(agent)
    bad = client.post(reverse("dashboard:saved-replies"), {"bot": bot.slug, "shortcut": "two words", "text": "x"})
    assert bad.status_code == 302 and SavedReply.objects.count() == 0
    # An agent may not write replies for every bot, nor for a bot they do not see.
    client.post(reverse("dashboard:saved-replies"), {"bot": "", "shortcut": "hi", "text": "Hello"})
    assert (
        client.post(
            reverse("dashboard:saved-replies"), {"bot": other_bot.slug, "shortcut": "hi", "text": "Hello"}
        ).status_code
        == 404
    )
    assert SavedReply.objects.count() == 0
    empty = client.post(
        reverse("dashboard:saved-replies"), {"bot": bot.slug, "shortcut": "hi", "text": ""}, follow=True
    )
    assert "Write the reply" in empty.content.decode()


def test_a_saved_reply_is_deleted_by_who_sees_its_bot(agent, other_agent, bot):
    reply = inbox.saved_reply_save(bot=bot, shortcut="hi", text="Hello!", user=agent)
    assert logged_in(other_agent).post(reverse("dashboard:saved-reply-delete", args=[reply.id])).status_code == 404
    assert logged_in(agent).post(reverse("dashboard:saved-reply-delete", args=[reply.id])).status_code == 302
    assert SavedReply.objects.count() == 0
