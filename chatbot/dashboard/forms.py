"""The dashboard's forms: they parse and validate; saving is the services' job (or a plain ModelForm save)."""

from django import forms
from django.contrib.auth import get_user_model

# A bot's settings form lives with the bots (a bot file is imported through it too); these names stay importable here.
from chatbot.bots.forms import BotForm, JSONTextField, LinesField, lead_form_problems  # noqa: F401
from chatbot.models import Bot, StaffMember


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
