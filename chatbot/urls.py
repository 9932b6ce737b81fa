from django.contrib import admin
from django.urls import path

from chatbot import views, widget

urlpatterns = [
    path("", widget.demo_page, name="home"),
    path("widget.js", widget.widget_loader, name="widget-loader"),
    path("chat/<str:public_id>/", widget.chat_page, name="chat-page"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
