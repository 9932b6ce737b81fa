from django.urls import path

from chatbot.dashboard.views import analytics, auth, bots, conversations, integrations, quality, staff

app_name = "dashboard"

urlpatterns = [
    path("", conversations.conversations, name="conversations"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("conversations/<str:conversation_id>/", conversations.transcript, name="transcript"),
    path("conversations/<str:conversation_id>/take-over/", conversations.take_over, name="take-over"),
    path("conversations/<str:conversation_id>/hand-back/", conversations.hand_back, name="hand-back"),
    path("conversations/<str:conversation_id>/messages/", conversations.staff_message, name="staff-message"),
    path("quality/", quality.quality_page, name="quality"),
    path("quality/answers/", quality.approved_answer_create, name="approved-answer-create"),
    path("quality/answers/<int:answer_id>/delete/", quality.approved_answer_remove, name="approved-answer-delete"),
    path("analytics/", analytics.analytics, name="analytics"),
    path("bots/", bots.bots, name="bots"),
    path("bots/new/", bots.bot_new, name="bot-new"),
    path("bots/import/", bots.bot_import, name="bot-import"),
    path("bots/<slug:slug>/", bots.bot_edit, name="bot-edit"),
    path("bots/<slug:slug>/knowledge/", bots.bot_knowledge, name="bot-knowledge"),
    path("bots/<slug:slug>/knowledge/progress/", bots.knowledge_progress, name="knowledge-progress"),
    path("bots/<slug:slug>/sources/<int:source_id>/resync/", bots.source_resync, name="source-resync"),
    path("bots/<slug:slug>/sources/<int:source_id>/delete/", bots.source_remove, name="source-delete"),
    path(
        "bots/<slug:slug>/sources/<int:source_id>/allow-private/",
        bots.source_allow_private,
        name="source-allow-private",
    ),
    path("bots/<slug:slug>/export/", bots.bot_export, name="bot-export"),
    # A bot's leads pages (bots/<slug>/leads/) are chatbot.dashboard.views.leads, routed in chatbot/urls.py.
    path("leads/", staff.leads_index, name="leads"),
    path("bots/<slug:slug>/secrets/<str:which>/rotate/", integrations.bot_secret_rotate_view, name="bot-secret-rotate"),
    path("integrations/", integrations.integrations, name="integrations"),
    path("integrations/keys/", integrations.api_key_new, name="api-key-new"),
    path("integrations/keys/<int:key_id>/revoke/", integrations.api_key_revoke_view, name="api-key-revoke"),
    path("integrations/webhooks/", integrations.webhook_new, name="webhook-new"),
    path("integrations/webhooks/<int:subscription_id>/delete/", integrations.webhook_remove, name="webhook-delete"),
    path("staff/", staff.staff, name="staff"),
    path("staff/new/", staff.staff_edit, name="staff-new"),
    path("staff/<int:member_id>/", staff.staff_edit, name="staff-edit"),
]
