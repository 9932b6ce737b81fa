from channels.generic.websocket import AsyncJsonWebsocketConsumer


class EchoConsumer(AsyncJsonWebsocketConsumer):
    """Answers each JSON frame with itself: a liveness probe for the websocket stack."""

    async def receive_json(self, content, **kwargs):
        await self.send_json({"type": "echo", "payload": content})
