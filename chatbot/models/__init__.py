"""The `chatbot` app's models, one module per domain (the app label stays `chatbot`, and so do the tables and
migrations). Import them from here: `from chatbot.models import Bot`."""

from chatbot.models.answers import ApprovedAnswer
from chatbot.models.bots import Bot, new_public_id, new_webhook_secret
from chatbot.models.conversations import Conversation, Message, new_conversation_id
from chatbot.models.inbox import ConversationNote, SavedReply
from chatbot.models.insights import ConversationInsight, InsightRun, Topic, TopicQuestion
from chatbot.models.integrations import (
    WEBHOOK_EVENTS,
    ApiKey,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookSubscription,
    new_subscription_secret,
)
from chatbot.models.leads import Lead, LeadDelivery, LeadDeliveryAttempt
from chatbot.models.staff import StaffMember, staff_colleague_name, staff_display_name

__all__ = [
    "WEBHOOK_EVENTS",
    "ApiKey",
    "ApprovedAnswer",
    "Bot",
    "Conversation",
    "ConversationInsight",
    "ConversationNote",
    "InsightRun",
    "Lead",
    "LeadDelivery",
    "LeadDeliveryAttempt",
    "Message",
    "SavedReply",
    "StaffMember",
    "Topic",
    "TopicQuestion",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookSubscription",
    "new_conversation_id",
    "new_public_id",
    "new_subscription_secret",
    "new_webhook_secret",
    "staff_colleague_name",
    "staff_display_name",
]
