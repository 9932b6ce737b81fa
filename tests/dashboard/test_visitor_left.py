"""A visitor who starts a new conversation in the widget while staff look at the old one: the transcript says so,
live and after a reload, and links to the new conversation (staff writing in the old one would not reach them).
Through the real ASGI application, Redis channel layer and database."""

import pytest

from chatbot.chat.conversations import conversation_start_next, message_receive

from .conftest import chat_socket, logged_in, receive_until, staff_socket

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_open_dashboard_hears_that_the_visitor_started_a_new_conversation(admin, bot):
    staff = await staff_socket(admin)
    assert (await staff.connect())[0]
    visitor = chat_socket(bot, ip="10.9.15.1")
    await visitor.connect()
    await visitor.send_json_to({"type": "hello", "page_url": "https://www.acme.test/pricing"})
    first = await receive_until(visitor, "ready")
    await visitor.send_json_to({"type": "message", "text": "Do you ship to Norway?", "client_id": "c1"})
    await receive_until(visitor, "ack")

    await visitor.send_json_to({"type": "new_conversation"})
    ready = await receive_until(visitor, "ready")

    left = await receive_until(staff, "visitor_left")
    assert left == {
        "type": "visitor_left",
        "conversation_id": first["conversation_id"],
        "new_conversation_id": ready["conversation_id"],
        "new_url": f"/dashboard/conversations/{ready['conversation_id']}/",
    }
    await visitor.disconnect()
    await staff.disconnect()


def test_the_transcript_of_a_conversation_the_visitor_left_links_to_their_new_one(admin, conversation):
    message_receive(conversation=conversation, text="Do you ship to Norway?", dispatch_answer=False)
    client = logged_in(admin)
    before = client.get(f"/dashboard/conversations/{conversation.id}/").content.decode()

    following = conversation_start_next(conversation=conversation)
    after = client.get(f"/dashboard/conversations/{conversation.id}/").content.decode()

    assert 'id="visitor-left" role="status" hidden' in before
    assert 'id="visitor-left" role="status">The visitor started a new conversation' in after
    assert f'href="/dashboard/conversations/{following.id}/">Open their new conversation' in after


def test_the_new_conversations_transcript_says_nothing_of_the_kind(admin, conversation):
    message_receive(conversation=conversation, text="Do you ship to Norway?", dispatch_answer=False)
    following = conversation_start_next(conversation=conversation)

    page = logged_in(admin).get(f"/dashboard/conversations/{following.id}/").content.decode()

    assert 'id="visitor-left" role="status" hidden' in page
