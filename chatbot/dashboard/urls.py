from django.urls import path

from chatbot.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.conversations, name="conversations"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("conversations/<str:conversation_id>/", views.transcript, name="transcript"),
    path("conversations/<str:conversation_id>/take-over/", views.take_over, name="take-over"),
    path("conversations/<str:conversation_id>/hand-back/", views.hand_back, name="hand-back"),
    path("conversations/<str:conversation_id>/messages/", views.staff_message, name="staff-message"),
    path("quality/", views.quality_page, name="quality"),
    path("quality/answers/", views.approved_answer_create, name="approved-answer-create"),
    path("quality/answers/<int:answer_id>/delete/", views.approved_answer_remove, name="approved-answer-delete"),
    path("analytics/", views.analytics, name="analytics"),
    path("bots/", views.bots, name="bots"),
    path("bots/new/", views.bot_new, name="bot-new"),
    path("bots/import/", views.bot_import, name="bot-import"),
    path("bots/<slug:slug>/", views.bot_edit, name="bot-edit"),
    path("bots/<slug:slug>/knowledge/", views.bot_knowledge, name="bot-knowledge"),
    path("bots/<slug:slug>/knowledge/progress/", views.knowledge_progress, name="knowledge-progress"),
    path("bots/<slug:slug>/sources/<int:source_id>/resync/", views.source_resync, name="source-resync"),
    path("bots/<slug:slug>/sources/<int:source_id>/delete/", views.source_remove, name="source-delete"),
    path("bots/<slug:slug>/export/", views.bot_export, name="bot-export"),
    # A bot's leads pages (bots/<slug>/leads/) belong to chatbot.leads_views, routed in chatbot/urls.py.
    path("leads/", views.leads_index, name="leads"),
    path("staff/", views.staff, name="staff"),
    path("staff/new/", views.staff_edit, name="staff-new"),
    path("staff/<int:member_id>/", views.staff_edit, name="staff-edit"),
]
