"""The forms of the Integrations page: a new API key, a new webhook subscription."""

from django import forms

from chatbot.models import WEBHOOK_EVENTS, Bot


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “CRM sync”.")
    bots = forms.ModelMultipleChoiceField(
        queryset=Bot.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None chosen: every bot, including bots added later.",
    )
    read_only = forms.BooleanField(required=False, help_text="It may read, never change anything.")


class WebhookSubscriptionForm(forms.Form):
    bot = forms.ModelChoiceField(queryset=Bot.objects.all(), required=False, empty_label="Every bot")
    url = forms.URLField(max_length=2000, label="URL", assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=[(event, event) for event in WEBHOOK_EVENTS], widget=forms.CheckboxSelectMultiple
    )
    description = forms.CharField(max_length=200, required=False)
    allow_private_addresses = forms.BooleanField(
        required=False, help_text="Allow an address inside your network (an intranet CRM). Never link-local ones."
    )
