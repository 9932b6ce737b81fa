from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from chatbot.chat import consumers
from chatbot.dashboard.consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/chat/<str:public_id>/", consumers.ChatConsumer.as_asgi()),
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
    # Staff only: the session cookie says who; the origin check stops other sites from using that cookie.
    path("ws/dashboard/", AllowedHostsOriginValidator(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
]
