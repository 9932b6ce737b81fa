"""The staff pages of leads (who may see them, deliveries and their attempts), the CSV export and its filters."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from chatbot.leads.capture import lead_capture
from chatbot.leads.delivery import lead_deliveries_send_due
from chatbot.leads.export import leads_csv_write, leads_filter
from chatbot.models import Conversation, Lead, Message, StaffMember

from .conftest import GOOD, lead_bot_create, visit


def staff(username: str, *, role="agent", bots=(), can_view_leads=False, superuser=False) -> User:
    user = User.objects.create_user(username, password="pw", is_superuser=superuser)
    if not superuser:
        member = StaffMember.objects.create(user=user, role=role, can_view_leads=can_view_leads)
        member.bots.set(bots)
    return user


def capture(bot, email="ada@example.com", visitor_id="visitor-1", **fields):
    return lead_capture(conversation=visit(bot, visitor_id=visitor_id), fields={**GOOD, "email": email, **fields}).lead


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_it_writes_every_field_campaign_and_consent_as_csv(lead_bot):
    lead = capture(lead_bot)
    out = io.StringIO()
    assert leads_csv_write(bot=lead_bot, leads=leads_filter(bot=lead_bot), out=out) == 1
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert header == [
        "id", "created_at", "updated_at", "email", "name", "phone", "company", "size", "message", "consent",
        "page_url", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
        "consent_text", "consent_at", "conversation_id",
    ]  # fmt: skip
    [row] = rows(out.getvalue())
    assert row["id"] == str(lead.id)
    assert row["email"] == "ada@example.com"
    assert row["company"] == "Analytical Engines"
    assert row["size"] == "11-50"
    assert row["utm_source"] == "newsletter"
    assert row["utm_campaign"] == "spring"
    assert row["consent_text"].startswith("I agree")
    assert row["consent_at"]
    assert row["conversation_id"] == lead.conversation_id


def test_a_formula_typed_into_the_form_is_not_run_by_a_spreadsheet(lead_bot):
    capture(lead_bot, company='=HYPERLINK("http://evil.test")', message="+1 cmd")
    out = io.StringIO()
    leads_csv_write(bot=lead_bot, leads=leads_filter(bot=lead_bot), out=out)
    [row] = rows(out.getvalue())
    assert row["company"] == '\'=HYPERLINK("http://evil.test")'
    assert row["message"] == "'+1 cmd"


def test_phone_numbers_are_written_as_typed_and_formulas_next_to_them_stay_guarded(lead_bot):
    capture(lead_bot, phone="+33 1 23 45 67 89", message="+33 1 23 45 67 89 -- call me =1+1")
    out = io.StringIO()
    leads_csv_write(bot=lead_bot, leads=leads_filter(bot=lead_bot), out=out)
    [row] = rows(out.getvalue())
    assert row["phone"] == "+33 1 23 45 67 89"
    assert row["message"] == "'+33 1 23 45 67 89 -- call me =1+1"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_no_cell_starts_a_formula_whatever_separator_the_spreadsheet_splits_on(lead_bot, delimiter):
    capture(lead_bot, company="x;=cmd|' /C calc'!A0", message="a, +1 cmd\n@SUM(A1)\tb; -2+3")
    out = io.StringIO()
    leads_csv_write(bot=lead_bot, leads=leads_filter(bot=lead_bot), out=out)
    # A spreadsheet that ignores the quotes and splits on `delimiter` (and lines) sees only these cells:
    cells = [cell.strip(' "') for line in out.getvalue().splitlines() for cell in line.split(delimiter)]
    # (Digits and phone punctuation alone, "+44 20 7946 0958", can call no function: written as typed.)
    starts = [
        cell for cell in cells if cell[:1] in ("=", "+", "-", "@") and not re.fullmatch(r"[+\-]?[0-9 ().\-/]+", cell)
    ]
    assert starts == []
    # Read properly, the text is all there, every field quoted.
    [row] = rows(out.getvalue())
    assert row["company"] == "x;'=cmd|' /C calc'!A0"
    assert out.getvalue().startswith('"id","created_at",')
    assert out.getvalue().split("\r\n")[1].startswith('"')  # the id too


def test_ids_parley_generated_are_written_exactly_even_when_they_start_like_a_formula(lead_bot):
    conversation = Conversation.objects.create(id="-fphTSSRya1mujKJzyyj_A", bot=lead_bot, visitor_id="visitor-1")
    lead_capture(conversation=conversation, fields=GOOD)
    out = io.StringIO()
    leads_csv_write(bot=lead_bot, leads=leads_filter(bot=lead_bot), out=out)
    [row] = rows(out.getvalue())
    assert row["conversation_id"] == "-fphTSSRya1mujKJzyyj_A"


def test_it_filters_by_date_range_and_consent(db):
    bot = lead_bot_create(lead_form={"fields": [{"type": "email", "required": True}, {"type": "consent"}]})
    old = capture(bot, email="old@example.com")
    Lead.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=10))
    capture(bot, email="new@example.com", visitor_id="v2")
    capture(bot, email="noconsent@example.com", visitor_id="v3", consent=False)
    today = timezone.localdate()

    def emails(**filters):
        return sorted(leads_filter(bot=bot, **filters).values_list("email", flat=True))

    assert emails() == ["new@example.com", "noconsent@example.com", "old@example.com"]
    assert emails(since=today - timedelta(days=1)) == ["new@example.com", "noconsent@example.com"]
    assert emails(until=today - timedelta(days=5)) == ["old@example.com"]
    assert emails(consent=True) == ["new@example.com", "old@example.com"]
    assert emails(consent=False) == ["noconsent@example.com"]


def test_the_exportleads_command_writes_the_filtered_csv(lead_bot, tmp_path):
    capture(lead_bot)
    capture(lead_bot_create(slug="other"), email="other@example.com")
    out = tmp_path / "leads.csv"
    call_command("exportleads", "--bot", "acme", "--consent", "yes", "--out", str(out), stderr=io.StringIO())
    assert [row["email"] for row in rows(out.read_text())] == ["ada@example.com"]


# --- the pages ---


@pytest.fixture
def acme_lead(lead_bot):
    lead = capture(lead_bot)
    lead_deliveries_send_due()  # the email: one attempt, delivered
    return lead


def test_anonymous_visitors_are_sent_to_log_in(client, acme_lead):
    response = client.get(reverse("leads-list", args=["acme"]))
    assert response.status_code == 302
    assert "login" in response["Location"]


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("superuser", 200),
        ("admin", 200),
        ("agent_with_leads", 200),
        ("agent_without_leads", 403),
        ("agent_of_another_bot", 403),
    ],
)
def test_only_administrators_and_agents_of_the_bot_allowed_leads_see_them(client, acme_lead, who, status):
    bot = acme_lead.bot
    other = lead_bot_create(slug="other")
    users = {
        "superuser": lambda: staff("root", superuser=True),
        "admin": lambda: staff("boss", role="admin"),
        "agent_with_leads": lambda: staff("sam", bots=[bot], can_view_leads=True),
        "agent_without_leads": lambda: staff("kim", bots=[bot]),
        "agent_of_another_bot": lambda: staff("lee", bots=[other], can_view_leads=True),
    }
    client.force_login(users[who]())
    for url in (
        reverse("leads-list", args=["acme"]),
        reverse("leads-export", args=["acme"]),
        reverse("lead-detail", args=["acme", acme_lead.id]),
    ):
        assert client.get(url).status_code == status, url


def test_the_list_shows_leads_with_their_delivery_and_the_detail_every_attempt(client, acme_lead):
    client.force_login(staff("sam", bots=[acme_lead.bot], can_view_leads=True))
    page = client.get(reverse("leads-list", args=["acme"])).content.decode()
    assert "ada@example.com" in page
    assert "Email: Delivered (1 attempt)" in page
    assert "Delete a visitor" not in page  # agents cannot delete
    detail = client.get(reverse("lead-detail", args=["acme", acme_lead.id])).content.decode()
    assert "Analytical Engines" in detail
    assert "utm_campaign=spring" in detail
    assert "<td>OK</td>" in detail
    assert acme_lead.bot.crm_webhook_secret not in detail


def test_the_lead_pages_are_dashboard_pages_that_read_like_the_form(client, acme_lead):
    client.force_login(staff("boss", role="admin"))
    page = client.get(reverse("leads-list", args=["acme"])).content.decode()
    assert 'href="/dashboard/quality/"' in page  # the dashboard's navigation
    detail = client.get(reverse("lead-detail", args=["acme", acme_lead.id])).content.decode()
    assert 'href="/dashboard/quality/"' in detail
    # Each field once, under the label of the bot's form; consent as its text and time, not "True".
    assert "<dt>Team size</dt><dd>11-50</dd>" in detail
    assert detail.count("<dt>Email</dt>") == 1 and detail.count("<dt>Name</dt>") == 1
    assert "<dt>email</dt>" not in detail and "<dt>consent</dt>" not in detail and "True" not in detail
    assert "Given <time" in detail
    link = reverse("dashboard:transcript", args=[acme_lead.conversation_id])
    assert f'<a href="{link}">Open the conversation</a>' in detail


def test_the_csv_export_page_applies_the_filters(client, acme_lead):
    client.force_login(staff("boss", role="admin"))
    response = client.get(reverse("leads-export", args=["acme"]), {"consent": "no"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    assert rows(response.content.decode()) == []
    response = client.get(reverse("leads-export", args=["acme"]), {"since": str(timezone.localdate())})
    assert [row["email"] for row in rows(response.content.decode())] == ["ada@example.com"]


def test_an_administrator_deletes_a_visitors_data_from_the_leads_page(client, acme_lead):
    Message.objects.create(conversation=acme_lead.conversation, role="visitor", text="I want a quote")
    agent = staff("sam", bots=[acme_lead.bot], can_view_leads=True)
    client.force_login(agent)
    url = reverse("visitor-delete", args=["acme"])
    assert client.post(url, {"email": "ada@example.com"}).status_code == 403
    assert Lead.objects.exists()
    client.force_login(staff("boss", role="admin"))
    response = client.post(url, {"email": "ada@example.com"}, follow=True)
    assert "Deleted 1 lead(s), 1 conversation(s) and 1 message(s) of ada@example.com." in response.content.decode()
    assert not Lead.objects.exists()
    assert not Conversation.objects.exists()
