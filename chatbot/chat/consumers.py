"""The visitor's chat socket (`/ws/chat/<bot public id>/`, docs/protocol.md). Thin: it reads and checks a frame
(chatbot.chat.frames), hands it to one service (chatbot.chat.session), sends back what the service returns, and
passes the conversation group's events to the widget."""

import json
import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from chatbot.chat import address_limits, conversations, frames, session
from chatbot.chat.answer_watch import SocketAnswers
from chatbot.chat.texts import chat_text, text_language
from chatbot.leads.triggers import lead_form_dismiss
from chatbot.models import Bot, Conversation
from chatbot.realtime import limits
from chatbot.realtime.async_db import SocketEventsDispatch, db_async
from chatbot.realtime.channel_layer import ChannelReleasedOnExit
from chatbot.realtime.protocol import (
    ChatDoneEvent,
    ErrorCode,
    ServerFrame,
    done_frame,
    echo_frame,
    error_frame,
    pong_frame,
    token_frame,
    typing_frame,
)
from chatbot.realtime.sockets import FramesSent

logger = logging.getLogger(__name__)


class EchoConsumer(ChannelReleasedOnExit, AsyncJsonWebsocketConsumer):
    """Answers each JSON frame with itself: a liveness probe for the websocket path through proxies. Only for
    pages of this site (the routing checks the Origin), and counted with the address's chat sockets: each one
    holds a channel in Redis."""

    counted_connection = False

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.counted_connection:
                self.counted_connection = False
                await limits.connections_close(ip=self.client_ip)

    async def connect(self):
        self.client_ip = (self.scope.get("client") or ["unknown"])[0]
        if not await limits.connections_open(ip=self.client_ip, limit=settings.CHAT_CONNECTIONS_PER_IP):
            await self.close(code=session.CLOSE_TOO_MANY)
            return
        self.counted_connection = True
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data or "")
        except (ValueError, RecursionError):  # a frame that is not JSON is the sender's mistake, not the socket's end
            await self.send_json(error_frame("bad_frame", chat_text("bad_json", "en")))
            return
        await self.send_json(echo_frame(content))


class ChatConsumer(ChannelReleasedOnExit, SocketEventsDispatch, FramesSent, AsyncWebsocketConsumer):
    bot: Bot | None = None
    conversation: Conversation | None = None
    hello: frames.HelloValues | None = None
    # After "New conversation": events of messages up to this id belong to the conversation the visitor left.
    left_messages_up_to = 0
    counted_connection = False
    answers: SocketAnswers | None = None

    async def __call__(self, scope, receive, send):
        # However the consumer ends (a crash, or cancelled by Daphne's close timeout without `disconnect`), its
        # address's connection count is given back: a leaked count locks the address out of the chat.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.connection_release()

    async def connection_release(self) -> None:
        if self.counted_connection:
            self.counted_connection = False
            await session.chat_socket_release(client_ip=self.client_ip)

    async def connect(self):
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in self.scope["headers"]}
        self.client_ip = (self.scope.get("client") or ["unknown"])[0]
        self.user_agent = headers.get("user-agent", "")
        # Two Host headers name no host for sure: such a socket is not on one of our own pages.
        host = headers.get("host", "") if [key for key, _ in self.scope["headers"]].count(b"host") == 1 else ""
        admitted = await session.chat_socket_admit(
            public_id=self.scope["url_route"]["kwargs"]["public_id"],
            origin=headers.get("origin", ""),
            host=host,
            client_ip=self.client_ip,
        )
        # A refusal is sent after accepting: a browser sees neither an HTTP status nor a close code sent during
        # the handshake, so the widget would otherwise retry forever.
        await self.accept()
        if isinstance(admitted, session.Refusal):
            logger.info("refused a chat socket (%s) from origin %r", admitted.frame["code"], headers.get("origin"))
            await self.send_frame(admitted.frame)
            await self.close(code=admitted.close_code)
            return
        self.bot, self.counted_connection = admitted, True
        self.answers = SocketAnswers(channel_layer=self.channel_layer, send_ended=self.send_done_again)

    async def disconnect(self, code):
        if self.answers is not None:
            self.answers.stop()
        if self.conversation is not None:
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        await self.connection_release()

    # --- frames from the widget ---

    async def receive(self, text_data=None, bytes_data=None):
        frame = frames.client_frame_parse(text_data, language=self.language)
        if frames.is_error(frame):
            await self.send_frame(frame)
            return
        handler = self.FRAME_HANDLERS.get(frame["type"])
        if handler is None:
            await self.send_error(
                "unknown_type", chat_text("unknown_type", self.language, type=repr(frame["type"][:40]))
            )
            return
        if frame["type"] not in frames.BEFORE_HELLO and self.conversation is None:
            await self.send_error("bad_frame", chat_text("hello_first", self.language))
            return
        try:
            await handler(self, frame)
        except Exception:
            logger.exception("chat frame %s failed", frame["type"])
            await self.send_error("server_error", chat_text("server_error", self.language), retryable=True)

    @property
    def language(self) -> str:
        """The visitor's language (their widget's, from hello), else the bot's: for the texts of error frames."""
        return text_language(
            self.conversation.language if self.conversation else "", self.bot.language if self.bot else ""
        )

    async def on_hello(self, frame: dict) -> None:
        hello = frames.hello_read(frame)
        if self.conversation is None and await address_limits.new_visitor_limited(
            bot=self.bot, visitor_token=hello.visitor_token, client_ip=self.client_ip
        ):
            await self.send_error(
                "rate_limited", "Too many new chats from your network. Please try again in a minute.", retryable=True
            )
            return
        if self.conversation is not None:
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        started = await db_async(session.chat_session_start)(bot=self.bot, hello=hello, user_agent=self.user_agent)
        # The conversation it resumes may be an older one (`Parley.identify`): none of its events is left behind.
        self.hello, self.left_messages_up_to = hello, 0
        await self.session_enter(started)

    async def on_new_conversation(self, frame: dict) -> None:
        if await session.conversation_new_limited(
            visitor_id=self.conversation.visitor_id
        ) or await address_limits.new_conversation_limited_for_address(client_ip=self.client_ip):
            await self.send_error("rate_limited", chat_text("new_conversation_too_fast", self.language), retryable=True)
            return
        started = await session.visitor_conversation_new(
            bot=self.bot, conversation=self.conversation, hello=self.hello, user_agent=self.user_agent
        )
        self.answers.stop()
        await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        self.left_messages_up_to = max(self.left_messages_up_to, started.left_messages_up_to)
        await self.session_enter(started)

    async def session_enter(self, started: session.SessionStarted) -> None:
        """Listen to the started (or resumed) conversation's events and tell the widget with `ready`."""
        self.conversation = started.conversation
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        await self.send_frames(started.frames)
        if started.streaming_message_id is not None:
            self.answers.watch(message_id=started.streaming_message_id, group=self.conversation.group_name)

    async def on_message(self, frame: dict) -> None:
        message = frames.message_read(frame, language=self.language)
        if frames.is_error(message):
            await self.send_frame(message)
            return
        if await session.visitor_message_limited(visitor_id=self.conversation.visitor_id, client_ip=self.client_ip):
            await self.send_error("rate_limited", chat_text("too_fast", self.language), retryable=True)
            return
        posted = await db_async(session.visitor_message_post)(conversation=self.conversation, message=message)
        # Join the group again (idempotent): a restarted Redis has forgotten every group, and this socket would
        # otherwise never hear the answer.
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        if posted.answer_message_id is not None:
            self.answers.watch(message_id=posted.answer_message_id, group=self.conversation.group_name)
        await self.send_frames(posted.frames)

    async def on_stop(self, frame: dict) -> None:
        await session.visitor_stop(conversation=self.conversation)

    async def on_feedback(self, frame: dict) -> None:
        feedback = frames.feedback_read(frame, language=self.language)
        if frames.is_error(feedback):
            await self.send_frame(feedback)
            return
        found = await db_async(conversations.message_feedback)(
            conversation=self.conversation, message_id=feedback.message_id, value=feedback.value
        )
        if not found:
            await self.send_error("not_found", chat_text("not_in_conversation", self.language))

    async def on_handoff_request(self, frame: dict) -> None:
        if await address_limits.handoff_request_limited(client_ip=self.client_ip):
            await self.send_error("rate_limited", "Please wait a little before asking again.", retryable=True)
            return
        await self.send_frames(await db_async(session.visitor_handoff_request)(conversation=self.conversation))

    async def on_lead_submit(self, frame: dict) -> None:
        fields = frames.lead_fields_read(frame, language=self.language)
        if frames.is_error(fields):
            await self.send_frame(fields)
            return
        if await session.lead_submit_limited(
            visitor_id=self.conversation.visitor_id
        ) or await address_limits.lead_submit_limited_for_address(client_ip=self.client_ip):
            await self.send_error("rate_limited", chat_text("lead_too_fast", self.language), retryable=True)
            return
        reply = await db_async(session.visitor_lead_submit)(conversation=self.conversation, fields=fields)
        await self.send_frame(reply)

    async def on_lead_dismiss(self, frame: dict) -> None:
        await db_async(lead_form_dismiss)(conversation=self.conversation)

    async def on_ping(self, frame: dict) -> None:
        await self.send_frame(pong_frame())

    FRAME_HANDLERS = {
        "hello": on_hello,
        "message": on_message,
        "stop": on_stop,
        "feedback": on_feedback,
        "handoff_request": on_handoff_request,
        "ping": on_ping,
        "lead_submit": on_lead_submit,
        "lead_dismiss": on_lead_dismiss,
        "new_conversation": on_new_conversation,
    }

    # --- events from the conversation's channel-layer group ---

    def left_behind(self, event) -> bool:
        """Whether an event is about a message of a conversation the visitor left: it was on its way when they
        started a new one, and is not shown in the new one."""
        return event.get("message_id", self.left_messages_up_to + 1) <= self.left_messages_up_to

    async def chat_typing(self, event):
        if not self.left_behind(event):
            await self.send_frame(typing_frame(event))

    async def chat_token(self, event):
        if not self.left_behind(event):
            await self.send_frame(token_frame(event))

    async def chat_done(self, event: ChatDoneEvent):
        if not self.left_behind(event) and self.answers.done_arrived(event):
            await self.send_frame(done_frame(event))

    async def send_done_again(self, event: ChatDoneEvent) -> None:
        """For the watchdog: an answer ended without its `done` reaching this socket. Sent through the socket's own
        channel, so it arrives after every event already on its way here (an answer's text is all published before
        the answer is saved), whether or not the socket is still in its group."""
        await self.channel_layer.send(self.channel_name, event)

    async def chat_error(self, event):
        await self.send_error(event["code"], event["message"], retryable=event.get("retryable", True))

    async def chat_frame(self, event):
        if not self.left_behind(event["frame"]):
            await self.send_frame(event["frame"])

    # --- sending ---

    async def send_frames(self, frames_: list[ServerFrame]) -> None:
        for frame in frames_:
            await self.send_frame(frame)

    async def send_error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        await self.send_frame(error_frame(code, message, retryable=retryable))
