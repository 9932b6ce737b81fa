from django.urls import path

from chatbot import consumers

websocket_urlpatterns = [
    path("ws/chat/<str:public_id>/", consumers.ChatConsumer.as_asgi()),
    path("ws/echo/", consumers.EchoConsumer.as_asgi()),
]
