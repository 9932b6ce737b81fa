"""Asking a bot through the API, along the widget's own path: the question is posted like a chat message
(chatbot.chat.session.visitor_message_post: a request for a person, staff who took over, the answer queued to a
worker), and the answer is heard on the conversation's channel-layer group like a widget hears it (token, done),
watched by the same watchdog (a lost worker ends the answer instead of leaving the caller waiting)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from channels.layers import get_channel_layer
from django.conf import settings

from chatbot.answers.watchdog import answer_watch
from chatbot.chat.conversations import conversation_resume_or_start
from chatbot.chat.frames import MessageValues
from chatbot.chat.identity import conversation_identity_save, identity_clean, visitor_id_of_user
from chatbot.chat.session import visitor_message_post
from chatbot.models import Bot, Conversation
from chatbot.realtime.async_db import db_async
from chatbot.realtime.protocol import done_frame, token_frame


class ConversationNotFound(LookupError):
    pass


def ask_conversation(
    *, bot: Bot, conversation_id: str | None, user_id: str | None, name: str = "", email: str = ""
) -> Conversation:
    """The conversation to ask in: the one named (of this bot), else the user's latest (the same visitor as a
    verified visitor of the widget: an API key is trusted to say who its users are), else a new one."""
    if conversation_id:
        conversation = Conversation.objects.select_related("bot").filter(id=conversation_id, bot=bot).first()
        if conversation is None:
            raise ConversationNotFound(conversation_id)
    elif user_id:
        conversation = conversation_resume_or_start(bot=bot, visitor_id=visitor_id_of_user(user_id))
    else:
        conversation = conversation_resume_or_start(bot=bot, visitor_id=f"api-{secrets.token_urlsafe(12)}")
    if user_id:
        conversation_identity_save(
            conversation=conversation, identity=identity_clean(user_id=user_id, name=name, email=email)
        )
    return conversation


async def ask_events(*, conversation: Conversation, question: str) -> AsyncIterator[tuple[str, dict]]:
    """(event, data) pairs: `ack` (the question saved), `token`s, then `done` (the widget's frames, with the
    conversation's id); or `error` {code, message} (code `busy` or `timeout`). Close it when done with it."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = conversation.group_name
    # Listening before the question is posted: the answer's first token cannot arrive before we hear it.
    await layer.group_add(group, channel)
    watch: asyncio.Task | None = None
    try:
        posted = await db_async(visitor_message_post)(
            conversation=conversation, message=MessageValues(text=question, client_id="")
        )
        by_type = {frame["type"]: frame for frame in posted.frames}
        if "ack" not in by_type:
            error = by_type.get("error") or {"code": "server_error", "message": "The question was not saved."}
            yield "error", {"code": error["code"], "message": error["message"]}
            return
        yield "ack", {"conversation_id": conversation.id, "message_id": by_type["ack"]["message_id"]}
        answer_id = posted.answer_message_id
        if answer_id is None:
            handoff = by_type.get("handoff")
            yield (
                "done",
                {
                    "type": "done",
                    "conversation_id": conversation.id,
                    "message_id": None,
                    "text": handoff["message"] if handoff else "",
                    "citations": [],
                    "status": f"handoff_{handoff['status']}" if handoff else "taken_over",
                },
            )
            return
        watch = asyncio.create_task(
            answer_watch(
                message_id=answer_id,
                group=group,
                channel_layer=layer,
                send_ended=lambda event: layer.send(channel, event),
            )
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.API_ASK_TIMEOUT_S
        while (remaining := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(layer.receive(channel), timeout=remaining)
            except TimeoutError:
                break
            if event.get("message_id") != answer_id:
                continue
            if event["type"] == "chat.token":
                yield "token", token_frame(event)
            elif event["type"] == "chat.done":
                yield "done", {**done_frame(event), "conversation_id": conversation.id}
                return
        yield "error", {"code": "timeout", "message": "No answer within the time allowed (API_ASK_TIMEOUT_S)."}
    finally:
        if watch is not None:
            watch.cancel()
        with contextlib.suppress(Exception):
            await layer.group_discard(group, channel)
            await layer.channel_release(channel)
