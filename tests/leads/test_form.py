"""The lead form: its definition (Bot.lead_form) and the server-side validation of what a visitor submits."""

import pytest

from chatbot.leads.form import LeadFormInvalid, lead_fields_validate, lead_form_parse, lead_form_payload

from .conftest import GOOD, LEAD_FORM


def form(language: str = "en"):
    return lead_form_parse(config=LEAD_FORM, language=language)


def test_it_accepts_a_complete_valid_submission():
    clean, errors = lead_fields_validate(form=form(), submitted=GOOD)
    assert errors == {}
    assert clean == GOOD


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("name", "  Ada   Lovelace ", "Ada Lovelace"),
        ("email", " ada@example.com ", "ada@example.com"),
        ("email", "ada+sales@sub.example.co.uk", "ada+sales@sub.example.co.uk"),
        ("phone", "+33 1 23 45 67 89", "+33 1 23 45 67 89"),
        ("phone", "(555) 123-4567", "(555) 123-4567"),
        ("company", "Analytical Engines Ltd.", "Analytical Engines Ltd."),
        ("size", "51+", "51+"),
        ("message", "Line one\nLine two", "Line one\nLine two"),
        ("consent", "on", True),
    ],
)
def test_it_accepts_good_values_of_every_field_type(name, value, expected):
    clean, errors = lead_fields_validate(form=form(), submitted={**GOOD, name: value})
    assert errors == {}
    assert clean[name] == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("email", "ada@", "Enter a valid email address."),
        ("email", "ada.example.com", "Enter a valid email address."),
        ("email", "ada@exa mple.com", "Enter a valid email address."),
        ("email", "", "This field is required."),
        ("phone", "call me", "Enter a valid phone number, for example +44 20 7946 0958."),
        ("phone", "12345", "Enter a valid phone number, for example +44 20 7946 0958."),
        ("phone", "+1 234 567 890 123 456 78", "Enter a valid phone number, for example +44 20 7946 0958."),
        ("phone", "01 23+45 67 89", "Enter a valid phone number, for example +44 20 7946 0958."),
        ("size", "1000+", "Choose one of the options."),
        ("consent", False, "Please tick this box to continue."),
        ("name", "x" * 201, "Use at most 200 characters."),
        ("company", ["not", "text"], "Enter a valid value."),
        ("message", "y" * 2001, "Use at most 2000 characters."),
    ],
)
def test_it_rejects_bad_values_with_a_clear_message(name, value, message):
    clean, errors = lead_fields_validate(form=form(), submitted={**GOOD, name: value})
    assert errors == {name: message}
    assert name not in clean


def test_it_leaves_out_empty_optional_fields_and_ignores_unknown_ones():
    clean, errors = lead_fields_validate(
        form=form(), submitted={"email": "ada@example.com", "consent": True, "phone": "  ", "is_admin": True}
    )
    assert errors == {}
    assert clean == {"email": "ada@example.com", "consent": True}


def test_it_reports_every_missing_required_field_at_once():
    _, errors = lead_fields_validate(form=form(), submitted={})
    assert errors == {"email": "This field is required.", "consent": "Please tick this box to continue."}


def test_it_speaks_the_visitors_language():
    _, errors = lead_fields_validate(form=form("fr"), submitted={"email": "nope"})
    assert errors["email"] == "Saisissez une adresse e-mail valide."
    _, errors = lead_fields_validate(form=form("de"), submitted={"email": "nope"})
    assert errors["email"] == "Geben Sie eine gültige E-Mail-Adresse ein."


def test_it_strips_control_characters():
    clean, _ = lead_fields_validate(form=form(), submitted={**GOOD, "name": "Ada\x00 Love\x1blace"})
    assert clean["name"] == "Ada Lovelace"


def test_it_fills_default_labels_title_and_button_in_the_visitors_language():
    parsed = lead_form_parse(
        config={"fields": [{"type": "email"}, {"type": "consent", "required": True}]}, language="de"
    )
    payload = lead_form_payload(parsed)
    assert payload["title"] == "Hinterlassen Sie Ihre Daten, wir melden uns"
    assert payload["submit_label"] == "Senden"
    assert [(f["name"], f["label"], f["required"]) for f in payload["fields"]] == [
        ("email", "E-Mail", False),
        ("consent", "Ich bin einverstanden, zu meiner Anfrage kontaktiert zu werden.", True),
    ]


def test_it_describes_every_field_to_the_widget():
    fields = lead_form_payload(form())["fields"]
    assert [f["type"] for f in fields] == ["name", "email", "phone", "company", "select", "text", "consent"]
    assert fields[4]["options"] == ["1-10", "11-50", "51+"]
    assert all(f["options"] == [] for f in fields if f["type"] != "select")


def test_a_bot_without_a_form_or_with_it_disabled_has_none():
    assert lead_form_parse(config={}) is None
    assert lead_form_parse(config={**LEAD_FORM, "enabled": False}) is None


@pytest.mark.parametrize(
    "config",
    [
        {"fields": []},
        {"fields": [{"type": "fax"}]},
        {"fields": [{"type": "email", "name": "Email Address"}]},
        {"fields": [{"type": "email"}, {"type": "email"}]},
        {"fields": [{"type": "select", "name": "size"}]},
        {"fields": [{"type": "select", "name": "size", "options": ["", "a"]}]},
        {"fields": [{"type": "email"}], "triggers": {"on_full_moon": True}},
        {"fields": [{"type": "email"}], "triggers": {"after_messages": -1}},
    ],
)
def test_it_refuses_a_malformed_form_definition(config):
    with pytest.raises(LeadFormInvalid):
        lead_form_parse(config=config)
