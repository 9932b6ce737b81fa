from django.contrib import admin
from django.urls import include, path

from chatbot.api.api import api
from chatbot.bots.views import demo_page, favicon
from chatbot.chat import widget
from chatbot.dashboard.views import leads as leads_views
from chatbot.ops import views as ops_views

urlpatterns = [
    path("", demo_page, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("widget.js", widget.widget_loader, name="widget-loader"),
    path("chat/<str:public_id>/", widget.chat_page, name="chat-page"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("dashboard/bots/<slug:slug>/leads/", leads_views.leads_list, name="leads-list"),
    path("dashboard/bots/<slug:slug>/leads.csv", leads_views.leads_export, name="leads-export"),
    path("dashboard/bots/<slug:slug>/leads/<int:lead_id>/", leads_views.lead_detail, name="lead-detail"),
    path("dashboard/bots/<slug:slug>/visitor-data/delete/", leads_views.visitor_data_delete, name="visitor-delete"),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("dashboard/", include("chatbot.dashboard.urls")),
]
