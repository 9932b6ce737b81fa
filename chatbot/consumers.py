"""Websocket consumers. Thin: validate a frame, call one service, reply; relay the conversation group's events."""

import asyncio
import json
import logging
from urllib.parse import urlsplit

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from chatbot import conversations, leads, redis_keys, watchdog
from chatbot.async_db import SocketEventsDispatch, db_async
from chatbot.channel_layer import ChannelReleasedOnExit
from chatbot.dashboard import handoff
from chatbot.models import Bot, Conversation
from chatbot.protocol import MAX_FRAME_BYTES, MAX_MESSAGE_CHARS, PROTOCOL_VERSION, ErrorCode
from chatbot.visitors import visitor_token_issue, visitor_token_read

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY = 4429


class EchoConsumer(ChannelReleasedOnExit, AsyncJsonWebsocketConsumer):
    """Answers each JSON frame with itself: a liveness probe for the websocket path through proxies."""

    async def receive_json(self, content, **kwargs):
        await self.send_json({"type": "echo", "payload": content})


def _origin(value: str) -> str:
    parts = urlsplit(value.strip().lower())
    if not parts.scheme or not parts.hostname:
        return ""
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def origin_allowed(*, origin: str, host: str, bot: Bot) -> bool:
    """Parley's own pages (the chat page in its iframe) or one of the bot's allowed sites."""
    origin = _origin(origin)
    if not origin:
        return False
    own = {_origin(settings.SITE_URL), _origin(f"http://{host}"), _origin(f"https://{host}")}
    allowed = {_origin(value) for value in bot.allowed_origins} | own
    return origin in allowed


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


@db_async
def _bot_by_public_id(public_id: str) -> Bot | None:
    return Bot.objects.filter(public_id=public_id).first()


class ChatConsumer(ChannelReleasedOnExit, SocketEventsDispatch, AsyncWebsocketConsumer):
    """One visitor's widget. Protocol: docs/protocol.md (frames typed in chatbot.protocol)."""

    bot: Bot | None = None
    conversation: Conversation | None = None
    counted_connection = False
    done_sent_for: int | None = None
    watchdog_task: asyncio.Task | None = None
    watched_message_id: int | None = None

    async def connect(self):
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in self.scope["headers"]}
        self.client_ip = (self.scope.get("client") or ["unknown"])[0]
        self.user_agent = headers.get("user-agent", "")
        self.bot = await _bot_by_public_id(self.scope["url_route"]["kwargs"]["public_id"])
        if self.bot is None:
            await self.refuse(CLOSE_NOT_FOUND, "not_found", "This chat does not exist (any more).")
            return
        if not origin_allowed(origin=headers.get("origin", ""), host=headers.get("host", ""), bot=self.bot):
            logger.info("refused chat socket for bot %s from origin %r", self.bot.slug, headers.get("origin"))
            await self.refuse(CLOSE_FORBIDDEN, "forbidden", "This website is not allowed to use this chat.")
            return
        if not await redis_keys.connections_open(ip=self.client_ip, limit=settings.CHAT_CONNECTIONS_PER_IP):
            await self.refuse(CLOSE_TOO_MANY, "rate_limited", "Too many chats are open from your network.")
            return
        self.counted_connection = True
        await self.accept()

    async def refuse(self, close_code: int, error_code: ErrorCode, message: str) -> None:
        """Refuse before any work, but say why: a browser sees neither an HTTP status nor a close code sent
        during the handshake, so the widget would otherwise retry forever."""
        await self.accept()
        await self.send_error(error_code, message)
        await self.close(code=close_code)

    async def disconnect(self, code):
        if self.watchdog_task is not None:
            self.watchdog_task.cancel()
        if self.conversation is not None:
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        if self.counted_connection:
            await redis_keys.connections_close(ip=self.client_ip)

    # --- frames from the widget ---

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            await self.send_error("bad_frame", "Only JSON text frames are accepted.")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self.send_error("too_long", f"Messages can be at most {MAX_MESSAGE_CHARS} characters.")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_frame", "That frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("bad_frame", "A frame is a JSON object with a string 'type'.")
            return
        if _contains_nul(frame):
            # PostgreSQL text cannot hold NUL; no visitor types one.
            await self.send_error("bad_frame", "Text may not contain NUL characters.")
            return
        handler = self.FRAME_HANDLERS.get(frame["type"])
        if handler is None:
            await self.send_error("unknown_type", f"Unknown frame type {frame['type'][:40]!r}.")
            return
        if frame["type"] not in ("hello", "ping") and self.conversation is None:
            await self.send_error("bad_frame", "Send a 'hello' frame first.")
            return
        try:
            await handler(self, frame)
        except Exception:
            logger.exception("chat frame %s failed", frame["type"])
            await self.send_error("server_error", "Something went wrong on our side. Please try again.", retryable=True)

    async def on_hello(self, frame: dict) -> None:
        token = frame.get("visitor_token")
        visitor_id = None
        if isinstance(token, str) and token:
            visitor_id = visitor_token_read(token=token, bot_public_id=self.bot.public_id)
        token, visitor_id = visitor_token_issue(bot_public_id=self.bot.public_id, visitor_id=visitor_id)
        if self.conversation is not None:
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        self.conversation, history = await self._start(
            visitor_id=visitor_id,
            page_url=str(frame.get("page_url") or ""),
            referrer=str(frame.get("referrer") or ""),
            language=str(frame.get("lang") or ""),
        )
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        await self.send_frame(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "visitor_token": token,
                "conversation_id": self.conversation.id,
                "messages": history,
                "bot": {"name": self.bot.name, "greeting": self.bot.greeting},
            }
        )
        # A worker may have died mid-answer while nobody watched: look now, and keep watching while it streams.
        streaming = [m["id"] for m in history if m["role"] == "bot" and m["status"] == "streaming"]
        if streaming:
            self.watch_answer(streaming[-1])
        await self.send_lead_form(leads.lead_form_on_hello)

    def watch_answer(self, message_id: int) -> None:
        """Notice if the worker writing this answer dies, and end it for the visitor (chatbot.watchdog)."""
        if self.watchdog_task is not None:
            self.watchdog_task.cancel()
        self.watched_message_id = message_id
        self.watchdog_task = asyncio.create_task(
            watchdog.answer_watch(
                message_id=message_id,
                group=self.conversation.group_name,
                channel_layer=self.channel_layer,
                send_ended=self.send_done_again,
            )
        )

    @db_async
    def _start(self, **details):
        conversation = conversations.conversation_resume_or_start(bot=self.bot, user_agent=self.user_agent, **details)
        return conversation, conversations.conversation_history(conversation=conversation)

    async def on_message(self, frame: dict) -> None:
        text = frame.get("text")
        client_id = frame.get("client_id") or ""
        if not isinstance(text, str) or not text.strip():
            await self.send_error("bad_frame", "A message needs some text.")
            return
        if not isinstance(client_id, str) or len(client_id) > 64:
            await self.send_error("bad_frame", "client_id must be a string of at most 64 characters.")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await self.send_error("too_long", f"Messages can be at most {MAX_MESSAGE_CHARS} characters.")
            return
        if await redis_keys.rate_limit_hit(
            scope="visitor", identity=self.conversation.visitor_id,
            limit=settings.CHAT_MESSAGES_PER_MINUTE_PER_VISITOR, window_s=60,
        ) or await redis_keys.rate_limit_hit(
            scope="ip", identity=self.client_ip, limit=settings.CHAT_MESSAGES_PER_MINUTE_PER_IP, window_s=60
        ):  # fmt: skip
            await self.send_error(
                "rate_limited", "You're sending messages very quickly. Please wait a moment and try again.",
                retryable=True,
            )  # fmt: skip
            return
        # "Can I talk to a person?" is a handoff request, not a question for the bot.
        wants_person = handoff.human_requested(text) and not await self._taken_over()
        try:
            visitor_message, bot_message = await db_async(conversations.message_receive)(
                conversation=self.conversation, text=text.strip(), client_id=client_id, answer=not wants_person
            )
        except conversations.ConversationBusy:
            await self.send_error(
                "busy", "Please wait until the current answer is finished, or stop it.", retryable=True
            )
            return
        # Join the group again (idempotent): a restarted Redis has forgotten every group, and this socket would
        # otherwise never hear the answer.
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        # "answer" tells the widget whether the bot will reply (not while staff have taken over, nor to a request
        # for a person), so it shows the typing indicator only when something is coming.
        await self.send_frame(
            {
                "type": "ack",
                "client_id": client_id,
                "message_id": visitor_message.id,
                "answer": bot_message is not None,
            }
        )
        if bot_message is not None and bot_message.status == "streaming":
            self.watch_answer(bot_message.id)
        if wants_person:
            await self.on_handoff_request({"type": "handoff_request"})
            return
        await self.send_lead_form(leads.lead_form_after_visitor_message)

    @db_async
    def _taken_over(self) -> bool:
        return Conversation.objects.filter(id=self.conversation.id, taken_over_by__isnull=False).exists()

    async def on_stop(self, frame: dict) -> None:
        streaming = await db_async(conversations.conversation_streaming_message)(conversation=self.conversation)
        if streaming is not None:
            await redis_keys.answer_request_stop(message_id=streaming.id)

    async def on_feedback(self, frame: dict) -> None:
        message_id, value = frame.get("message_id"), frame.get("value")
        if not isinstance(message_id, int) or value not in ("up", "down"):
            await self.send_error("bad_frame", "Feedback needs a message_id and a value of 'up' or 'down'.")
            return
        found = await db_async(conversations.message_feedback)(
            conversation=self.conversation, message_id=message_id, value=value
        )
        if not found:
            await self.send_error("not_found", "That answer is not part of this conversation.")

    async def on_handoff_request(self, frame: dict) -> None:
        # "requested" when a staff member is online within business hours (the dashboards are told at once);
        # otherwise "unavailable", and the widget offers the lead form.
        outcome = await db_async(handoff.handoff_request)(conversation=self.conversation)
        await self.send_frame({"type": "handoff", "status": outcome.status, "message": outcome.message})
        if outcome.status == "unavailable":
            await self.send_lead_form(leads.lead_form_on_handoff_unavailable)

    async def send_lead_form(self, trigger) -> None:
        """Offer the lead form if `trigger` (a chatbot.leads service taking the conversation) says so."""
        frame = await db_async(trigger)(conversation=self.conversation)
        if frame is not None:
            await self.send_frame(frame)

    async def on_lead_submit(self, frame: dict) -> None:
        fields = frame.get("fields")
        if not isinstance(fields, dict) or len(fields) > 50:
            await self.send_error("bad_frame", "lead_submit needs 'fields', an object of the form's values.")
            return
        if await redis_keys.rate_limit_hit(scope="lead", identity=self.conversation.visitor_id, limit=10, window_s=60):
            await self.send_error("rate_limited", "Please wait a moment before sending the form again.", retryable=True)
            return
        result = await db_async(leads.lead_capture)(conversation=self.conversation, fields=fields)
        if result.errors:
            await self.send_frame({"type": "lead_errors", "errors": result.errors})
        else:
            await self.send_frame({"type": "lead_saved", "message": result.message})

    async def on_lead_dismiss(self, frame: dict) -> None:
        await db_async(leads.lead_form_dismiss)(conversation=self.conversation)

    async def on_ping(self, frame: dict) -> None:
        await self.send_frame({"type": "pong"})

    FRAME_HANDLERS = {
        "hello": on_hello,
        "message": on_message,
        "stop": on_stop,
        "feedback": on_feedback,
        "handoff_request": on_handoff_request,
        "ping": on_ping,
        "lead_submit": on_lead_submit,
        "lead_dismiss": on_lead_dismiss,
    }

    # --- events from the conversation's channel-layer group ---

    async def chat_typing(self, event):
        await self.send_frame({"type": "typing", "message_id": event["message_id"]})

    async def chat_token(self, event):
        await self.send_frame({"type": "token", "message_id": event["message_id"], "text": event["text"]})

    async def chat_done(self, event):
        # The answer ended: stop watching it (unless this `done` is the watchdog's own, with its error to follow).
        # Only that answer's `done`: a late one of an earlier answer (the watchdog's resend, say) must not leave the
        # answer now streaming unwatched.
        if (
            self.watchdog_task is not None
            and event["message_id"] == self.watched_message_id
            and event.get("finalised_by") != "watchdog"
        ):
            self.watchdog_task.cancel()
        await self.send_done(event)

    async def send_done_again(self, event: dict) -> None:
        """For the watchdog: an answer ended without its `done` reaching this socket. Sent through the socket's own
        channel, so it arrives after every event already on its way here (an answer's text is all published before
        the answer is saved), whether or not the socket is still in its group."""
        await self.channel_layer.send(self.channel_name, event)

    async def send_done(self, event: dict) -> None:
        # An answer's end reaches this socket once: the watchdog resends a `done` it thinks was missed, and the
        # group's own may still be on its way.
        if event["message_id"] == self.done_sent_for:
            return
        self.done_sent_for = event["message_id"]
        await self.send_frame(
            {
                "type": "done",
                "message_id": event["message_id"],
                "status": event["status"],
                "citations": event["citations"],
                "text": event["text"],
            }
        )

    async def chat_error(self, event):
        await self.send_error(event["code"], event["message"], retryable=event.get("retryable", True))

    async def chat_frame(self, event):
        await self.send_frame(event["frame"])

    # --- sending ---

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def send_error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        await self.send_frame({"type": "error", "code": code, "message": message, "retryable": retryable})
