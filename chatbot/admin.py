from django.contrib import admin

from chatbot.bots.services import bot_search_language_apply
from chatbot.models import Bot


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "public_id", "strict_mode", "updated_at"]
    search_fields = ["name", "slug", "public_id"]
    readonly_fields = ["public_id", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        bot_search_language_apply(bot=obj)
