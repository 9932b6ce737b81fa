"""A bot's settings as an administrator edits them: the dashboard's form, and the check every bot file passes through
before it is imported (chatbot.bots.botfiles), so both accept exactly the same settings."""

import json

from django import forms

from chatbot.bots.services import bot_search_language_apply
from chatbot.chat.handoff import business_hours_validate
from chatbot.chat.origins import origin_normalise, origin_problem
from chatbot.leads.form import LeadFormInvalid, lead_form_parse
from chatbot.models import Bot


def lead_form_problems(value: dict) -> list[str]:
    """The leads domain owns the lead form's schema: use its parser."""
    try:
        lead_form_parse(config=value)
    except LeadFormInvalid as error:
        return [str(error)]
    return []


class JSONTextField(forms.CharField):
    """A JSON object or list edited in a textarea."""

    def __init__(self, *, kind: type = dict, **kwargs):
        self.kind = kind
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 6, "class": "code", "spellcheck": "false"}))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return self.kind()
        try:
            parsed = json.loads(value)
        except ValueError as error:
            raise forms.ValidationError(f"Not valid JSON: {error}") from None
        if not isinstance(parsed, self.kind):
            raise forms.ValidationError(f"Must be a JSON {'object' if self.kind is dict else 'list'}.")
        return parsed


class LinesField(forms.CharField):
    """A list of strings, one per line."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [line.strip() for line in (value or "").splitlines() if line.strip()]


class BotForm(forms.ModelForm):
    allowed_origins = LinesField(help_text="One origin per line, e.g. https://www.example.com")
    # Write-only: never rendered back. Empty keeps the saved key, unless the endpoint changes (then it is dropped:
    # a key for one server must not follow the bot to another).
    model_api_key = forms.CharField(
        required=False,
        max_length=500,
        label="Model endpoint key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Bearer token for the model endpoint above, when it is not this instance's own model server.",
    )
    clear_model_api_key = forms.BooleanField(required=False, label="Remove the saved key")
    stop_sequences = LinesField(help_text="Up to 4 stop sequences, one per line.")
    business_hours = JSONTextField(
        help_text='{"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"], ...}}; empty: always open.'
    )
    lead_form = JSONTextField(help_text="The lead form (fields, triggers); see the lead capture documentation.")

    class Meta:
        model = Bot
        fields = [
            "name", "slug", "persona", "greeting", "color", "avatar_url", "language", "allowed_origins",
            "model_endpoint", "adapter_id", "temperature", "top_p", "max_new_tokens", "max_passages", "stop_sequences",
            "seed", "strict_mode", "business_hours", "lead_form", "notification_email", "crm_webhook_url",
            "lead_retention_days", "conversation_retention_days",
        ]  # fmt: skip
        widgets = {
            "persona": forms.Textarea(attrs={"rows": 6}),
            "greeting": forms.Textarea(attrs={"rows": 2}),
            "color": forms.TextInput(attrs={"type": "color"}),
        }

    def clean_max_passages(self):
        value = self.cleaned_data["max_passages"]
        return Bot._meta.get_field("max_passages").default if value is None else value

    def clean_temperature(self):
        value = self.cleaned_data["temperature"]
        if not 0 <= value <= 2:
            raise forms.ValidationError("Between 0 and 2.")
        return value

    def clean_top_p(self):
        value = self.cleaned_data["top_p"]
        if value is not None and not 0 < value <= 1:
            raise forms.ValidationError("Between 0 (excluded) and 1.")
        return value

    def clean_stop_sequences(self):
        value = self.cleaned_data["stop_sequences"]
        if len(value) > 4:
            raise forms.ValidationError("At most 4 stop sequences.")
        return value

    def clean_allowed_origins(self):
        value = self.cleaned_data["allowed_origins"]
        # Each one becomes a source of the chat page's CSP: a space or a "*" there would let any site frame it.
        problems = [problem for origin in value if (problem := origin_problem(origin))]
        if problems:
            raise forms.ValidationError(problems)
        return list(dict.fromkeys(origin_normalise(origin) for origin in value))

    def clean_business_hours(self):
        value = self.cleaned_data["business_hours"]
        problems = business_hours_validate(value)
        if problems:
            raise forms.ValidationError(problems)
        return value

    def clean_lead_form(self):
        value = self.cleaned_data["lead_form"]
        problems = lead_form_problems(value) if value else []
        if problems:
            raise forms.ValidationError(problems)
        return value

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out (an older bot file, a form posted without it): the default.
        self.fields["max_passages"].required = False
        saved = self.instance.model_api_key if self.instance.pk else ""
        if saved:
            self.fields["model_api_key"].help_text = f"A key ending in …{saved[-4:]} is saved. {_KEY_HELP}"

    def clean(self):
        data = super().clean()
        saved = self.instance.model_api_key if self.instance.pk else ""
        endpoint_changed = self.instance.pk and data.get("model_endpoint", "") != self.instance.model_endpoint
        if data.get("model_api_key"):
            self.api_key = data["model_api_key"]
        elif data.get("clear_model_api_key") or endpoint_changed:
            self.api_key = ""
        else:
            self.api_key = saved
        return data

    def bot_fields(self) -> dict:
        """The bot's settings to save, the key included (it is not a field of the model form)."""
        fields = {name: self.cleaned_data[name] for name in self._meta.fields if name in self.cleaned_data}
        return {**fields, "model_api_key": self.api_key}

    def save(self, commit: bool = True) -> Bot:
        self.instance.model_api_key = self.api_key
        bot = super().save(commit=commit)
        if commit:
            # Every way of changing a bot's settings (dashboard, API, bot files) saves through this form.
            bot_search_language_apply(bot=bot)
        return bot


_KEY_HELP = "Type a new one to replace it; changing the endpoint drops it."
