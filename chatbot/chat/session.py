"""What a visitor's chat socket does, as plain functions the consumer hands its checked frames to: who may open a
chat, starting (or resuming) the conversation, posting a message, asking for a person, stopping an answer, the
lead form. Each returns the frames to send back; the consumer only sends them.

The synchronous ones touch the database and run on the consumers' database threads (`db_async`), one call per
frame."""

from dataclasses import dataclass, field
from typing import Literal

from django.conf import settings

from chatbot.answers.stops import answer_request_stop
from chatbot.chat import conversations
from chatbot.chat.frames import HelloValues, MessageValues
from chatbot.chat.handoff import handoff_request, human_requested
from chatbot.chat.identity import (
    conversation_identity_save,
    identity_clean,
    identity_verify,
    visitor_id_of_user,
)
from chatbot.chat.origins import origin_allowed
from chatbot.chat.texts import chat_text, text_language
from chatbot.chat.visitors import visitor_token_issue, visitor_token_read
from chatbot.leads.capture import lead_capture
from chatbot.leads.triggers import lead_form_after_visitor_message, lead_form_on_handoff_unavailable, lead_form_on_hello
from chatbot.models import Bot, Conversation
from chatbot.realtime import limits
from chatbot.realtime.async_db import db_async
from chatbot.realtime.protocol import (
    ErrorFrame,
    ServerFrame,
    ack_frame,
    error_frame,
    handoff_frame,
    lead_errors_frame,
    lead_saved_frame,
    ready_frame,
)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429
LEAD_SUBMITS_PER_MINUTE = 10
NEW_CONVERSATIONS_PER_MINUTE = 5


# --- opening the socket --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a socket may not chat: the error frame to send, then the close code."""

    close_code: int
    frame: ErrorFrame


@db_async
def _bot_by_public_id(public_id: str) -> Bot | None:
    return Bot.objects.filter(public_id=public_id).first()


async def chat_socket_admit(*, public_id: str, origin: str, host: str, client_ip: str) -> Bot | Refusal:
    """The bot a new socket chats with, or why it may not: an unknown bot, a site not allowed to embed it, or too
    many chats open from its address (then counted as open until `chat_socket_release`)."""
    bot = await _bot_by_public_id(public_id)
    if bot is None:
        return Refusal(CLOSE_NOT_FOUND, error_frame("not_found", chat_text("no_such_chat")))
    language = text_language(bot.language)
    if not origin_allowed(origin=origin, host=host, bot=bot):
        return Refusal(CLOSE_FORBIDDEN, error_frame("forbidden", chat_text("origin_forbidden", language)))
    if not await limits.connections_open(ip=client_ip, limit=settings.CHAT_CONNECTIONS_PER_IP):
        return Refusal(CLOSE_TOO_MANY, error_frame("rate_limited", chat_text("too_many_chats", language)))
    return bot


async def chat_socket_release(*, client_ip: str) -> None:
    await limits.connections_close(ip=client_ip)


# --- hello ---------------------------------------------------------------------------------------------------


@dataclass
class SessionStarted:
    conversation: Conversation
    frames: list[ServerFrame]
    # A bot answer still streaming (its worker may have died while nobody watched): watch it.
    streaming_message_id: int | None = None
    # After "New conversation": the newest message id of the conversation left. The events of its answers may still
    # be on their way to the socket; none of them is for the visitor any more.
    left_messages_up_to: int = 0


def chat_session_start(*, bot: Bot, hello: HelloValues, user_agent: str) -> SessionStarted:
    """The visitor's conversation (resumed through their token, or new), as `ready`, and the lead form if it is due.
    A verified user of the host site (chatbot.chat.identity) resumes their conversation on any device."""
    visitor_id = None
    if hello.visitor_token:
        visitor_id = visitor_token_read(token=hello.visitor_token, bot_public_id=bot.public_id)
    identity, verified = None, None
    if hello.identity is not None:
        verified = identity_verify(bot=bot, user_id=hello.identity.user_id, user_hash=hello.identity.user_hash)
        if verified:
            identity = identity_clean(
                user_id=hello.identity.user_id, name=hello.identity.name, email=hello.identity.email
            )
            visitor_id = visitor_id_of_user(identity.user_id)
    if identity is None and visitor_id is not None and visitor_id.startswith("user:"):
        # The user logged out of the host site: whoever uses this browser now must not see their conversation.
        visitor_id = None
    token, visitor_id = visitor_token_issue(bot_public_id=bot.public_id, visitor_id=visitor_id)
    conversation = conversations.conversation_resume_or_start(
        bot=bot,
        visitor_id=visitor_id,
        page_url=hello.page_url,
        referrer=hello.referrer,
        language=hello.language,
        user_agent=user_agent,
    )
    if identity is not None:
        conversation_identity_save(conversation=conversation, identity=identity)
    return _session_started(
        bot=bot,
        conversation=conversation,
        token=token,
        identity=None if verified is None else "verified" if verified else "rejected",
    )


def _session_started(
    *, bot: Bot, conversation: Conversation, token: str, identity: Literal["verified", "rejected"] | None
) -> SessionStarted:
    history = conversations.conversation_history(conversation=conversation)
    frames: list[ServerFrame] = [
        ready_frame(
            visitor_token=token,
            conversation_id=conversation.id,
            messages=history,
            bot_name=bot.name,
            greeting=bot.greeting,
            identity=identity,
            visitor={"name": conversation.visitor_name, "email": conversation.visitor_email}
            if identity == "verified"
            else None,
        )
    ]
    if lead_form := lead_form_on_hello(conversation=conversation):
        frames.append(lead_form)
    streaming = [m["id"] for m in history if m["role"] == "bot" and m["status"] == "streaming"]
    return SessionStarted(conversation, frames, streaming[-1] if streaming else None)


# --- a new conversation ----------------------------------------------------------------------------------------


async def conversation_new_limited(*, visitor_id: str) -> bool:
    """Whether a "New conversation" is over the visitor's per-minute limit (counted either way)."""
    return await limits.rate_limit_hit(
        scope="new-conversation", identity=visitor_id, limit=NEW_CONVERSATIONS_PER_MINUTE, window_s=60
    )


async def visitor_conversation_new(
    *, bot: Bot, conversation: Conversation, hello: HelloValues, user_agent: str
) -> SessionStarted:
    """The visitor starts over: the answer streaming in the conversation they leave is stopped (nobody reads it
    now), and they get their next conversation (`conversations.conversation_start_next`) as `ready`, with the lead
    form if it is due, as after `hello`. Their token stays theirs; a reload resumes the new conversation."""
    await visitor_stop(conversation=conversation)
    return await db_async(_conversation_next_session)(
        bot=bot, conversation=conversation, hello=hello, user_agent=user_agent
    )


def _conversation_next_session(
    *, bot: Bot, conversation: Conversation, hello: HelloValues, user_agent: str
) -> SessionStarted:
    left_up_to = conversations.conversation_last_message_id(conversation=conversation)
    following = conversations.conversation_start_next(
        conversation=conversation,
        page_url=hello.page_url,
        referrer=hello.referrer,
        language=hello.language,
        user_agent=user_agent,
    )
    token, _ = visitor_token_issue(bot_public_id=bot.public_id, visitor_id=following.visitor_id)
    started = _session_started(
        bot=bot, conversation=following, token=token, identity="verified" if following.visitor_verified else None
    )
    started.left_messages_up_to = left_up_to
    return started


# --- a message -----------------------------------------------------------------------------------------------


async def visitor_message_limited(*, visitor_id: str, client_ip: str) -> bool:
    """Whether this message is over the visitor's or the address's per-minute limit (counted either way)."""
    return await limits.rate_limits_hit(
        limits=[
            ("visitor", visitor_id, settings.CHAT_MESSAGES_PER_MINUTE_PER_VISITOR),
            ("ip", client_ip, settings.CHAT_MESSAGES_PER_MINUTE_PER_IP),
        ],
        window_s=60,
    )


@dataclass
class MessagePosted:
    frames: list[ServerFrame] = field(default_factory=list)
    # The bot's answer now streaming, to watch.
    answer_message_id: int | None = None


def visitor_message_post(*, conversation: Conversation, message: MessageValues) -> MessagePosted:
    """Save the visitor's message and queue the bot's answer; `ack` it. "Can I talk to a person?" is a handoff
    request, not a question for the bot (unless staff are already there)."""
    wants_person = (
        human_requested(message.text)
        and not Conversation.objects.filter(id=conversation.id, taken_over_by__isnull=False).exists()
    )
    try:
        visitor_message, bot_message = conversations.message_receive(
            conversation=conversation, text=message.text, client_id=message.client_id, answer=not wants_person
        )
    except conversations.ConversationBusy:
        language = text_language(conversation.language, conversation.bot.language)
        busy = error_frame("busy", chat_text("busy", language), retryable=True)
        return MessagePosted(frames=[busy])
    posted = MessagePosted(
        frames=[ack_frame(client_id=message.client_id, message_id=visitor_message.id, answer=bot_message is not None)],
        answer_message_id=bot_message.id if bot_message is not None and bot_message.status == "streaming" else None,
    )
    if wants_person:
        posted.frames += visitor_handoff_request(conversation=conversation)
    elif lead_form := lead_form_after_visitor_message(conversation=conversation):
        posted.frames.append(lead_form)
    return posted


# --- asking for a person, stopping, feedback -------------------------------------------------------------------


def visitor_handoff_request(*, conversation: Conversation) -> list[ServerFrame]:
    """`handoff`: "requested" when a staff member is online within business hours (the dashboards are told at
    once); otherwise "unavailable", and the lead form is offered."""
    outcome = handoff_request(conversation=conversation)
    frames: list[ServerFrame] = [handoff_frame(status=outcome.status, message=outcome.message)]
    if outcome.status == "unavailable" and (lead_form := lead_form_on_handoff_unavailable(conversation=conversation)):
        frames.append(lead_form)
    return frames


async def visitor_stop(*, conversation: Conversation) -> None:
    """Ask the worker streaming the conversation's answer (if one streams) to stop."""
    streaming = await db_async(conversations.conversation_streaming_message)(conversation=conversation)
    if streaming is not None:
        await answer_request_stop(message_id=streaming.id)


# --- the lead form -------------------------------------------------------------------------------------------


async def lead_submit_limited(*, visitor_id: str) -> bool:
    return await limits.rate_limit_hit(scope="lead", identity=visitor_id, limit=LEAD_SUBMITS_PER_MINUTE, window_s=60)


def visitor_lead_submit(*, conversation: Conversation, fields: dict) -> ServerFrame:
    result = lead_capture(conversation=conversation, fields=fields)
    if result.errors:
        return lead_errors_frame(errors=result.errors)
    return lead_saved_frame(message=result.message)
