"""What a consumer sends on its websocket: each frame as compact JSON, and nothing to a socket its client closed."""

import json
import logging

from autobahn.exception import Disconnected

logger = logging.getLogger(__name__)


class FramesSent:
    """A consumer mixin: `send_frame`. A client that closes its socket while the consumer is still making a frame
    for it (its disconnect is on its way to the consumer) leaves Daphne's protocol closed, and autobahn refuses the
    frame (`Disconnected`). Nobody is there to read it: it is dropped, not an error. What it carried is saved, and a
    client that comes back gets the conversation with its `ready` frame."""

    async def send_frame(self, frame: dict) -> None:
        try:
            await self.send(text_data=json.dumps(frame, separators=(",", ":")))
        except Disconnected:
            logger.debug("dropped a %s frame: its socket was closed", frame.get("type"))
