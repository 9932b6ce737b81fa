"""The staff dashboard's websocket: live conversation list, handoff alerts, presence, and the streaming answers of
the conversation a staff member is looking at. Thin: authorise, join groups, forward events."""

import asyncio
import contextlib
import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from chatbot.chat.staff_feed import dashboard_message
from chatbot.dashboard import permissions, selectors
from chatbot.models import Conversation
from chatbot.realtime import presence
from chatbot.realtime.async_db import SocketEventsDispatch, db_async
from chatbot.realtime.channel_layer import ChannelReleasedOnExit
from chatbot.realtime.protocol import (
    ADMINS_GROUP,
    CLOSE_ACCESS_CHANGED,
    DashboardMessage,
    answer_done_frame,
    answer_token_frame,
    bot_group,
    conversation_group,
    dashboard_conversation_frame,
    dashboard_error_frame,
    dashboard_handoff_frame,
    dashboard_message_frame,
    dashboard_source_frame,
    dashboard_visitor_left_frame,
    pong_frame,
    staff_user_group,
    watching_frame,
)
from chatbot.realtime.sockets import FramesSent

CLOSE_FORBIDDEN = 4403
logger = logging.getLogger(__name__)


@db_async
def _access(user) -> tuple[str | None, list[int]]:
    role = permissions.staff_role(user)
    return role, sorted(permissions.bot_ids_visible(user)) if role else []


@db_async
def _access_now(user_id: int) -> tuple[str | None, list[int]]:
    """The access of the user as the database has it now (the socket's user object is from its handshake)."""
    user = get_user_model().objects.filter(id=user_id).first()
    if user is None:
        return None, []
    role = permissions.staff_role(user)
    return role, sorted(permissions.bot_ids_visible(user)) if role else []


@db_async
def _messages_after(conversation_id: str, after_message_id: int) -> list[DashboardMessage]:
    return [
        dashboard_message(message)
        for message in selectors.transcript_after(conversation_id=conversation_id, after_message_id=after_message_id)
    ]


@db_async
def _conversation_visible(user, conversation_id: str) -> bool:
    conversation = Conversation.objects.filter(id=conversation_id).first()
    return conversation is not None and permissions.conversation_visible(user, conversation)


class DashboardConsumer(ChannelReleasedOnExit, SocketEventsDispatch, FramesSent, AsyncWebsocketConsumer):
    groups_joined: list[str]
    presence_keys: list[str]
    watching: str | None = None
    access: tuple[str | None, list[int]] = (None, [])
    recheck_task: asyncio.Task | None = None

    async def connect(self):
        self.groups_joined, self.presence_keys = [], []
        user = self.scope.get("user")
        role, bot_ids = await _access(user) if user is not None and user.is_authenticated else (None, [])
        if role is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user, self.access = user, (role, bot_ids)
        self.groups_joined = [ADMINS_GROUP] if role == "admin" else [bot_group(bot_id) for bot_id in bot_ids]
        self.groups_joined.append(staff_user_group(user.id))
        self.presence_keys = presence.presence_keys(admin=role == "admin", bot_ids=bot_ids)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await presence.presence_refresh(channel_name=self.channel_name, keys=self.presence_keys)
        # Access is also checked again now and then: a change made where no event is sent (the admin site, a
        # deleted user, a script) still closes the socket within DASHBOARD_ACCESS_RECHECK_S.
        self.recheck_task = asyncio.create_task(self.access_recheck_periodically())

    async def access_recheck_periodically(self) -> None:
        closed = False
        while not closed:
            await asyncio.sleep(settings.DASHBOARD_ACCESS_RECHECK_S)
            try:
                closed = await self.access_recheck()
            except Exception:  # the database away for a moment: check again next time
                logger.warning("could not check the access of dashboard user %s", self.user.id, exc_info=True)

    async def access_recheck(self) -> bool:
        """Close the socket if the staff member's access is no longer what it joined with: a removed member hears
        no more visitors, and a changed one reconnects with what they may see now. True when it closed."""
        if self.access[0] is None or await _access_now(self.user.id) == self.access:
            return False
        self.access = (None, [])
        await self.close(code=CLOSE_ACCESS_CHANGED)
        return True

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:  # however the consumer ends (cut short, its `disconnect` never runs), its re-check ends with it
            if self.recheck_task is not None:
                self.recheck_task.cancel()

    async def dashboard_access_changed(self, event):
        await self.access_recheck()

    async def disconnect(self, code):
        if self.recheck_task is not None:
            self.recheck_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recheck_task
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.watching:
            await self.channel_layer.group_discard(conversation_group(self.watching), self.channel_name)
        if self.presence_keys:
            await presence.presence_leave(channel_name=self.channel_name, keys=self.presence_keys)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data or "")
        except (ValueError, RecursionError):  # "[" * 20000 exhausts the parser's recursion, not the socket
            frame = None
        if not isinstance(frame, dict):
            await self.send_frame(dashboard_error_frame("Frames are JSON objects."))
            return
        kind = frame.get("type")
        if kind == "ping":
            await presence.presence_refresh(channel_name=self.channel_name, keys=self.presence_keys)
            await self.send_frame(pong_frame())
        elif kind == "watch":
            conversation_id = frame.get("conversation_id")
            if not isinstance(conversation_id, str) or not await _conversation_visible(self.user, conversation_id):
                await self.send_frame(dashboard_error_frame("No such conversation."))
                return
            await self.unwatch()
            self.watching = conversation_id
            await self.channel_layer.group_add(conversation_group(conversation_id), self.channel_name)
            await self.send_frame(watching_frame(conversation_id=conversation_id))
            # What was saved after the page's last message (while it reloaded, or the socket reconnected): joined
            # first, then read, so a message is sent here at least once (the page shows each id once).
            after = frame.get("after_message_id")
            if isinstance(after, int) and not isinstance(after, bool):
                for message in await _messages_after(conversation_id, after):
                    await self.send_frame(dashboard_message_frame(conversation_id=conversation_id, message=message))
        elif kind == "unwatch":
            await self.unwatch()
        else:
            await self.send_frame(dashboard_error_frame(f"Unknown frame type {str(kind)[:40]!r}."))

    async def unwatch(self) -> None:
        if self.watching:
            await self.channel_layer.group_discard(conversation_group(self.watching), self.channel_name)
            self.watching = None

    # --- dashboard events ---

    async def dashboard_conversation(self, event):
        await self.send_frame(dashboard_conversation_frame(event))

    async def dashboard_message(self, event):
        await self.send_frame(
            dashboard_message_frame(conversation_id=event["conversation_id"], message=event["message"])
        )

    async def dashboard_handoff(self, event):
        await self.send_frame(dashboard_handoff_frame(event))

    async def dashboard_visitor_left(self, event):
        await self.send_frame(dashboard_visitor_left_frame(event))

    async def dashboard_source(self, event):
        await self.send_frame(dashboard_source_frame(event))

    # --- the watched conversation's events (the same the visitor's widget gets) ---

    async def chat_typing(self, event):
        pass

    async def chat_token(self, event):
        await self.send_frame(answer_token_frame(event, conversation_id=self.watching))

    async def chat_done(self, event):
        await self.send_frame(answer_done_frame(event, conversation_id=self.watching))

    async def chat_error(self, event):
        pass

    async def chat_frame(self, event):
        # Staff messages and handoff updates reach the dashboards as dashboard.* events already.
        pass
