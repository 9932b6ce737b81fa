"""The staff websocket, takeover and handoff, through the real ASGI application, Redis channel layer and database."""

from datetime import UTC, datetime

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chatbot.chat import handoff
from chatbot.chat import staff as services
from chatbot.chat.conversations import message_receive
from chatbot.chat.handoff import business_hours_open, business_hours_validate, human_requested
from chatbot.models import Conversation, Message

from .conftest import chat_socket, receive_until, staff_socket

pytestmark = pytest.mark.django_db(transaction=True)


# --- who may open the staff websocket ---


async def _refused(communicator) -> int:
    connected, code = await communicator.connect()
    assert not connected
    # Let the refused consumer finish, so nothing of it outlives the test.
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait(timeout=2)
    return code


async def test_it_refuses_an_anonymous_socket():
    assert await _refused(await staff_socket()) in (4403, 1000)


async def test_it_refuses_a_user_who_is_not_staff(outsider):
    assert await _refused(await staff_socket(outsider)) == 4403


async def test_it_refuses_a_socket_opened_by_another_site(admin):
    # The session cookie goes along with a cross-site websocket: only our own pages may use it.
    assert await _refused(await staff_socket(admin, origin="https://evil.test")) is not None


@pytest.mark.parametrize("who", ["admin", "agent", "superuser"])
async def test_it_accepts_staff_and_answers_pings(request, who):
    user = await database_sync_to_async(request.getfixturevalue)(who)
    socket = await staff_socket(user)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=5))["type"] == "pong"
    await socket.disconnect()


async def test_an_agent_cannot_watch_another_bots_conversation(other_agent, conversation):
    socket = await staff_socket(other_agent)
    await socket.connect()
    await socket.send_json_to({"type": "watch", "conversation_id": conversation.id})
    assert (await socket.receive_json_from(timeout=5))["type"] == "error"
    await socket.disconnect()


# --- the live list ---


async def test_a_visitors_message_reaches_the_dashboards_of_its_bot_live(agent, other_agent, admin, bot):
    agent_socket, other_socket, admin_socket = [await staff_socket(u) for u in (agent, other_agent, admin)]
    for socket in (agent_socket, other_socket, admin_socket):
        assert (await socket.connect())[0]
    visitor = chat_socket(bot)
    await visitor.connect()
    await visitor.send_json_to({"type": "hello", "page_url": "https://www.acme.test/pricing"})
    ready = await receive_until(visitor, "ready")

    await visitor.send_json_to({"type": "message", "text": "Do you ship to Norway?", "client_id": "c1"})

    for socket in (agent_socket, admin_socket):
        frames = [await socket.receive_json_from(timeout=5) for _ in range(2)]
        message, row = sorted(frames, key=lambda frame: frame["type"] == "conversation")
        assert message["type"] == "message" and message["message"]["text"] == "Do you ship to Norway?"
        assert row["conversation"]["id"] == ready["conversation_id"]
        assert row["conversation"]["preview"] == "Do you ship to Norway?"
        assert row["conversation"]["page_url"] == "https://www.acme.test/pricing"
    assert await other_socket.receive_nothing(timeout=0.3)
    for socket in (agent_socket, other_socket, admin_socket, visitor):
        await socket.disconnect()


async def test_a_watched_conversation_streams_its_answer_to_the_dashboard(agent, conversation):
    socket = await staff_socket(agent)
    await socket.connect()
    await socket.send_json_to({"type": "watch", "conversation_id": conversation.id})
    await receive_until(socket, "watching")
    layer = get_channel_layer()
    await layer.group_send(conversation.group_name, {"type": "chat.token", "message_id": 9, "text": "Yes, "})
    await layer.group_send(
        conversation.group_name,
        {"type": "chat.done", "message_id": 9, "status": "complete", "citations": [], "text": "Yes, we do."},
    )
    assert (await receive_until(socket, "answer_token"))["text"] == "Yes, "
    done = await receive_until(socket, "answer_done")
    assert done["text"] == "Yes, we do." and done["conversation_id"] == conversation.id
    await socket.disconnect()


async def test_watching_again_sends_the_messages_saved_after_the_last_one_the_page_shows(agent, conversation):
    """A page that reloads (taking over posts a form) or a socket that reconnects misses what is saved meanwhile:
    the `watch` frame says the last message the page shows, and the server sends what came after it."""
    first, _ = await database_sync_to_async(message_receive)(
        conversation=conversation, text="Do you ship abroad?", answer=False
    )
    later, _ = await database_sync_to_async(message_receive)(
        conversation=conversation, text="Can someone check my order 1234?", answer=False
    )
    socket = await staff_socket(agent)
    await socket.connect()
    await socket.send_json_to({"type": "watch", "conversation_id": conversation.id, "after_message_id": first.id})
    await receive_until(socket, "watching")

    missed = await receive_until(socket, "message")

    assert (missed["conversation_id"], missed["message"]["id"]) == (conversation.id, later.id)
    assert (missed["message"]["role"], missed["message"]["text"]) == ("visitor", "Can someone check my order 1234?")
    await socket.send_json_to({"type": "watch", "conversation_id": conversation.id, "after_message_id": later.id})
    await receive_until(socket, "watching")
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from(timeout=5))["type"] == "pong", "nothing more to send"
    await socket.disconnect()


# --- takeover ---


def test_while_taken_over_the_bot_stays_silent_until_handed_back(agent, conversation):
    services.conversation_take_over(conversation=conversation, user=agent)

    _, bot_message = message_receive(conversation=conversation, text="Hello?", dispatch_answer=False)

    assert bot_message is None
    assert list(conversation.messages.values_list("role", flat=True)) == ["visitor"]

    services.conversation_hand_back(conversation=conversation, user=agent)
    _, bot_message = message_receive(conversation=conversation, text="Still there?", dispatch_answer=False)
    assert bot_message is not None and bot_message.status == Message.Status.STREAMING


async def test_the_visitor_sees_who_joined_their_staff_messages_and_when_they_leave(agent, bot):
    visitor = chat_socket(bot)
    await visitor.connect()
    await visitor.send_json_to({"type": "hello"})
    ready = await receive_until(visitor, "ready")
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])

    await database_sync_to_async(services.conversation_take_over)(conversation=conversation, user=agent)
    assert (await receive_until(visitor, "staff_joined"))["name"] == "Alan"

    message = await database_sync_to_async(services.staff_message_send)(
        conversation=conversation, user=agent, text="Hi, I'm Alan. How can I help?"
    )
    frame = await receive_until(visitor, "staff_message")
    assert frame == {
        "type": "staff_message", "message_id": message.id, "name": "Alan", "text": "Hi, I'm Alan. How can I help?",
    }  # fmt: skip

    await visitor.send_json_to({"type": "message", "text": "Where is my order?", "client_id": "c2"})
    await receive_until(visitor, "ack")
    assert await visitor.receive_nothing(timeout=0.3)  # no typing, no answer: the bot is silent
    roles = await database_sync_to_async(lambda: list(conversation.messages.values_list("role", flat=True)))()
    assert roles == ["staff", "visitor"]

    await database_sync_to_async(services.conversation_hand_back)(conversation=conversation, user=agent)
    await receive_until(visitor, "staff_left")
    await visitor.disconnect()


def test_staff_can_write_only_in_a_conversation_they_took_over(agent, admin, conversation):
    with pytest.raises(services.ConversationNotTakenOver):
        services.staff_message_send(conversation=conversation, user=agent, text="Hi")
    services.conversation_take_over(conversation=conversation, user=agent)
    with pytest.raises(services.ConversationTakenByOther):
        services.conversation_take_over(conversation=conversation, user=admin)
    with pytest.raises(services.ConversationNotTakenOver):
        services.staff_message_send(conversation=conversation, user=admin, text="Hi")


def test_the_takeover_buttons_and_the_staff_message_form_work(agent, conversation):
    from django.urls import reverse

    from .conftest import logged_in

    client = logged_in(agent)
    client.post(reverse("dashboard:take-over", args=[conversation.id]))
    conversation.refresh_from_db()
    assert conversation.taken_over_by == agent
    response = client.post(
        reverse("dashboard:staff-message", args=[conversation.id]), {"text": "On it!"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200 and response.json()["message"]["author"] == "Alan"
    assert conversation.messages.get(role="staff").text == "On it!"
    client.post(reverse("dashboard:hand-back", args=[conversation.id]))
    conversation.refresh_from_db()
    assert conversation.taken_over_by is None


# --- handoff ---


async def _request_handoff(bot, **frame) -> tuple:
    visitor = chat_socket(bot)
    await visitor.connect()
    await visitor.send_json_to({"type": "hello"})
    ready = await receive_until(visitor, "ready")
    await visitor.send_json_to(frame or {"type": "handoff_request"})
    return visitor, ready, await receive_until(visitor, "handoff")


async def test_when_nobody_is_online_the_visitor_is_told_so(bot):
    visitor, ready, reply = await _request_handoff(bot)
    assert reply["status"] == "unavailable" and reply["message"]
    conversation = await database_sync_to_async(Conversation.objects.get)(id=ready["conversation_id"])
    assert conversation.handoff_requested_at is not None
    await visitor.disconnect()


async def test_when_staff_are_online_the_dashboard_gets_the_request_with_a_summary(agent, bot):
    socket = await staff_socket(agent)
    await socket.connect()
    visitor, ready, reply = await _request_handoff(bot)
    assert reply["status"] == "requested"
    alert = await receive_until(socket, "handoff")
    assert alert["conversation_id"] == ready["conversation_id"] and alert["status"] == "requested"
    assert alert["summary"] and alert["url"].endswith(f"/conversations/{ready['conversation_id']}/")
    await socket.disconnect()
    await visitor.disconnect()


async def test_an_agent_of_another_bot_online_does_not_count(other_agent, bot):
    socket = await staff_socket(other_agent)
    await socket.connect()
    visitor, _, reply = await _request_handoff(bot)
    assert reply["status"] == "unavailable"
    await socket.disconnect()
    await visitor.disconnect()


async def test_outside_business_hours_the_visitor_is_offered_the_lead_form_instead(admin, bot):
    bot.business_hours = {"timezone": "UTC", "days": {}}  # closed every day
    bot.business_hours["days"] = {"mon": ["00:00", "00:01"]}
    await database_sync_to_async(bot.save)()
    socket = await staff_socket(admin)
    await socket.connect()
    visitor, _, reply = await _request_handoff(bot)
    assert reply["status"] == "unavailable"
    await socket.disconnect()
    await visitor.disconnect()


async def test_asking_for_a_person_in_a_message_is_a_handoff_request_not_a_question(agent, bot):
    socket = await staff_socket(agent)
    await socket.connect()
    visitor, ready, reply = await _request_handoff(
        bot, type="message", text="Can I talk to a real person please?", client_id="h1"
    )
    assert reply["status"] == "requested"
    await receive_until(socket, "handoff")
    roles = await database_sync_to_async(
        lambda: list(Message.objects.filter(conversation_id=ready["conversation_id"]).values_list("role", flat=True))
    )()
    assert roles == ["visitor"]  # the bot does not answer it
    await socket.disconnect()
    await visitor.disconnect()


@pytest.mark.parametrize(
    "text",
    [
        "Can I talk to a person?",
        "I want to speak with a human",
        "speak to someone from your team",
        "Please connect me with an agent.",
        "AGENT!",
        "human please",
        "real person",
        "Could I chat with one of your support agents?",
        "Je voudrais parler à un conseiller",
        "Kann ich mit einem Mitarbeiter sprechen?",
        "get me a human",
    ],
)
def test_it_recognises_a_wish_for_a_person(text):
    assert human_requested(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I get the chatbot to talk with people on my site?",
        "Does your product support people with disabilities?",
        "I don't want to talk to a human, just tell me the price",
        "What does a support plan cost?",
        "How do I add a person to my team account?",
        "Is the agent software available for Linux?",
        "",
    ],
)
def test_it_does_not_mistake_other_messages_for_a_handoff_request(text):
    assert not human_requested(text)


def test_business_hours():
    hours = {"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"], "sat": [["10:00", "12:00"]]}}
    assert business_hours_validate(hours) == []
    monday_10_paris = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    monday_19_paris = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert business_hours_open(hours=hours, now=monday_10_paris)
    assert not business_hours_open(hours=hours, now=monday_19_paris)
    assert not business_hours_open(hours=hours, now=sunday)
    assert business_hours_open(hours={}, now=sunday)
    assert business_hours_validate({"timezone": "Mars/Base", "days": {"mon": ["18:00", "09:00"], "xyz": []}})


def test_the_summary_says_what_the_visitor_asked(conversation):
    for text in ["Do you ship to Norway?", "And how much does it cost?", "talk to a human"]:
        message_receive(conversation=conversation, text=text, dispatch_answer=False, answer=False)
    summary = handoff.conversation_summary(conversation=conversation)
    assert "Do you ship to Norway?" in summary and "how much does it cost" in summary
    assert "talk to a human" not in summary
