from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from chatbot.chat import consumers
from chatbot.dashboard.consumers import DashboardConsumer


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other path: refused, instead of an exception and a traceback in the log."""

    async def connect(self):
        await self.close(code=4404)


websocket_urlpatterns = [
    path("ws/chat/<str:public_id>/", consumers.ChatConsumer.as_asgi()),
    # Parley's own pages only (a probe for proxies), and counted like chat sockets.
    path("ws/echo/", AllowedHostsOriginValidator(consumers.EchoConsumer.as_asgi())),
    # Staff only: the session cookie says who; the origin check stops other sites from using that cookie.
    path("ws/dashboard/", AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
    re_path(r"", NoSuchSocket.as_asgi()),
]
