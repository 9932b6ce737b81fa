"""The dashboard's forms: they parse and validate; saving is the services' job (or a plain ModelForm save)."""

import json

from django import forms
from django.contrib.auth import get_user_model

from chatbot.chat.handoff import business_hours_validate
from chatbot.leads.form import LeadFormInvalid, lead_form_parse
from chatbot.models import Bot, StaffMember


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
    stop_sequences = LinesField(help_text="Up to 4 stop sequences, one per line.")
    business_hours = JSONTextField(
        help_text='{"timezone": "Europe/Paris", "days": {"mon": ["09:00", "18:00"], ...}}; empty: always open.'
    )
    lead_form = JSONTextField(help_text="The lead form (fields, triggers); see the lead capture documentation.")

    class Meta:
        model = Bot
        fields = [
            "name", "slug", "persona", "greeting", "color", "avatar_url", "language", "allowed_origins",
            "model_endpoint", "adapter_id", "temperature", "top_p", "max_new_tokens", "stop_sequences", "seed",
            "strict_mode", "business_hours", "lead_form", "notification_email", "crm_webhook_url",
            "lead_retention_days", "conversation_retention_days",
        ]  # fmt: skip
        widgets = {
            "persona": forms.Textarea(attrs={"rows": 6}),
            "greeting": forms.Textarea(attrs={"rows": 2}),
            "color": forms.TextInput(attrs={"type": "color"}),
        }

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
        bad = [origin for origin in value if not origin.startswith(("http://", "https://"))]
        if bad:
            raise forms.ValidationError(f"Not an origin: {', '.join(bad)} (start with https://).")
        return value

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


class SourceForm(forms.Form):
    kind = forms.ChoiceField(choices=[("file", "Upload"), ("url", "Web page"), ("sitemap", "Sitemap"), ("faq", "FAQ")])
    file = forms.FileField(required=False)
    url = forms.URLField(required=False, max_length=2000)
    resync_every_hours = forms.IntegerField(required=False, min_value=1)
    question = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    answer = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind == "file" and not data.get("file"):
            self.add_error("file", "Choose a file to upload.")
        if kind in ("url", "sitemap") and not data.get("url"):
            self.add_error("url", "Give the page's or the sitemap's address.")
        if kind == "faq" and not (data.get("question", "").strip() and data.get("answer", "").strip()):
            self.add_error("answer", "An FAQ entry needs a question and an answer.")
        return data


class ApprovedAnswerForm(forms.Form):
    bot = forms.SlugField()
    question = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=8000)
    add_faq = forms.BooleanField(required=False, initial=True, label="Also add it to the knowledge base as an FAQ")


class StaffForm(forms.Form):
    username = forms.CharField(max_length=150)
    display_name = forms.CharField(max_length=100, required=False, help_text="The name visitors see.")
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=StaffMember.Role.choices)
    bots = forms.ModelMultipleChoiceField(
        queryset=Bot.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    can_view_leads = forms.BooleanField(required=False)
    password = forms.CharField(
        required=False, widget=forms.PasswordInput, help_text="Leave empty to keep the current password."
    )

    def __init__(self, *args, creating: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.creating = creating
        if creating:
            self.fields["password"].required = True
            self.fields["password"].help_text = ""
        else:
            self.fields["username"].disabled = True

    def clean_username(self):
        username = self.cleaned_data["username"]
        if self.creating and get_user_model().objects.filter(username=username).exists():
            raise forms.ValidationError("That username is taken.")
        return username


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A bot configuration exported from Parley (JSON).")
