"""One chat socket's view of the answers it shows: the answer it watches (so a dead worker does not leave the
visitor with a typing indicator forever: chatbot.answers.watchdog), and the `done` it has sent (an answer's end
reaches the socket once, whether from the worker, the watchdog or both)."""

import asyncio
from collections.abc import Awaitable, Callable

from chatbot.answers.watchdog import answer_watch
from chatbot.realtime.protocol import ChatDoneEvent


class SocketAnswers:
    def __init__(self, *, channel_layer, send_ended: Callable[[ChatDoneEvent], Awaitable[None]]) -> None:
        self._channel_layer = channel_layer
        self._send_ended = send_ended
        self._task: asyncio.Task | None = None
        self._watched: int | None = None
        self._done_sent_for: int | None = None

    def watch(self, *, message_id: int, group: str) -> None:
        """Watch this streaming answer (instead of any earlier one) until its `done` arrives."""
        self.stop()
        self._watched = message_id
        self._task = asyncio.create_task(
            answer_watch(
                message_id=message_id,
                group=group,
                channel_layer=self._channel_layer,
                send_ended=self._send_ended,
            )
        )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def done_arrived(self, event: ChatDoneEvent) -> bool:
        """An answer ended: stop watching it (unless this `done` is the watchdog's own, with its error to follow).
        Only that answer's `done`: a late one of an earlier answer (the watchdog's resend, say) must not leave the
        answer now streaming unwatched. Returns whether the socket should send it (False: it already did)."""
        if event["message_id"] == self._watched and event.get("finalised_by") != "watchdog":
            self.stop()
        if event["message_id"] == self._done_sent_for:
            return False
        self._done_sent_for = event["message_id"]
        return True
