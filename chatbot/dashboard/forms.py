"""The dashboard's forms: they parse and validate; saving is the services' job (or a plain ModelForm save)."""

from django import forms
from django.contrib.auth import get_user_model

# A bot's settings form lives with the bots (a bot file is imported through it too); these names stay importable here.
from chatbot.bots.forms import BotForm, JSONTextField, LinesField, lead_form_problems  # noqa: F401
from chatbot.models import Bot, StaffMember


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files from one input (Django's documented pattern): a list of uploaded files."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True}))
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


class SourceForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("file", "Upload"), ("site", "Website"), ("url", "Web page"), ("sitemap", "Sitemap"), ("faq", "FAQ")]
    )
    file = MultipleFileField(
        required=False, label="Files", help_text="PDF, Word, HTML, Markdown, text or CSV; several at once, or a .zip."
    )
    url = forms.URLField(required=False, max_length=2000, label="Address")
    max_pages = forms.IntegerField(required=False, min_value=1, max_value=10_000, initial=500, label="At most pages")
    max_depth = forms.IntegerField(
        required=False, min_value=0, max_value=50, initial=5, label="At most links away from the start page"
    )
    include_patterns = LinesField(
        label="Only these paths", help_text="One pattern per line, e.g. /docs/*; empty: the whole site."
    )
    exclude_patterns = LinesField(label="Never these paths", help_text="One pattern per line, e.g. /blog/*.")
    allow_private_addresses = forms.BooleanField(
        required=False,
        label="Allow private network addresses",
        help_text="For a site on your own network (intranet); refused otherwise, to protect the internal network.",
    )
    resync_every_hours = forms.IntegerField(required=False, min_value=1, label="Re-sync every (hours)")
    question = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    answer = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind == "file" and not data.get("file"):
            self.add_error("file", "Choose a file to upload.")
        if kind in ("url", "sitemap", "site") and not data.get("url"):
            self.add_error("url", "Give the address of the page, the sitemap or the site's start page.")
        for name in ("include_patterns", "exclude_patterns"):
            if any(not pattern.startswith(("/", "*")) for pattern in data.get(name, [])):
                self.add_error(name, "A pattern is a path: start it with / (or *), e.g. /docs/*.")
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
