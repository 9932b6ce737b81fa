from django.urls import path

from chatbot.dashboard.views import (
    analytics,
    auth,
    bots,
    conversations,
    corrections,
    inbox,
    insights,
    privacy,
    quality,
    staff,
)

app_name = "dashboard"

urlpatterns = [
    path("", conversations.conversations, name="conversations"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("conversations/<str:conversation_id>/", conversations.transcript, name="transcript"),
    path("conversations/<str:conversation_id>/take-over/", conversations.take_over, name="take-over"),
    path("conversations/<str:conversation_id>/hand-back/", conversations.hand_back, name="hand-back"),
    path("conversations/<str:conversation_id>/messages/", conversations.staff_message, name="staff-message"),
    # The inbox, corrections and a visitor's data, from a transcript.
    path("conversations/<str:conversation_id>/assign/", inbox.assign, name="assign"),
    path("conversations/<str:conversation_id>/resolve/", inbox.resolve, name="resolve"),
    path("conversations/<str:conversation_id>/notes/", inbox.note_add, name="note-add"),
    path(
        "conversations/<str:conversation_id>/messages/<int:message_id>/correct/",
        corrections.correct,
        name="message-correct",
    ),
    path(
        "conversations/<str:conversation_id>/messages/<int:message_id>/approve/",
        corrections.approve,
        name="correction-approve",
    ),
    path("conversations/<str:conversation_id>/visitor-data/", privacy.visitor_export, name="visitor-export"),
    path("conversations/<str:conversation_id>/visitor-data/delete/", privacy.visitor_delete, name="visitor-delete"),
    path("replies/", inbox.saved_replies, name="saved-replies"),
    path("replies/<int:reply_id>/delete/", inbox.saved_reply_delete, name="saved-reply-delete"),
    path("quality/", quality.quality_page, name="quality"),
    path("quality/answers/", quality.approved_answer_create, name="approved-answer-create"),
    path("quality/answers/<int:answer_id>/delete/", quality.approved_answer_remove, name="approved-answer-delete"),
    path("analytics/", analytics.analytics, name="analytics"),
    path("analytics/insights/", insights.insights_refresh, name="insights-refresh"),
    path("bots/", bots.bots, name="bots"),
    path("bots/new/", bots.bot_new, name="bot-new"),
    path("bots/import/", bots.bot_import, name="bot-import"),
    path("bots/<slug:slug>/", bots.bot_edit, name="bot-edit"),
    path("bots/<slug:slug>/knowledge/", bots.bot_knowledge, name="bot-knowledge"),
    path("bots/<slug:slug>/knowledge/progress/", bots.knowledge_progress, name="knowledge-progress"),
    path("bots/<slug:slug>/sources/<int:source_id>/resync/", bots.source_resync, name="source-resync"),
    path("bots/<slug:slug>/sources/<int:source_id>/delete/", bots.source_remove, name="source-delete"),
    path("bots/<slug:slug>/export/", bots.bot_export, name="bot-export"),
    # A bot's leads pages (bots/<slug>/leads/) are chatbot.dashboard.views.leads, routed in chatbot/urls.py.
    path("leads/", staff.leads_index, name="leads"),
    path("staff/", staff.staff, name="staff"),
    path("staff/new/", staff.staff_edit, name="staff-new"),
    path("staff/<int:member_id>/", staff.staff_edit, name="staff-edit"),
]
