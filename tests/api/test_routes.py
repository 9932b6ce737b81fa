"""The API's routes, through Django's test client on the real database: bots (read, update with the form's
validation), approved answers, conversations (the dashboard's filters, paging, messages, a staff reply), leads
(list, one, CSV, deleting a visitor's data), knowledge (sources, adding each kind, upload, re-sync, status), the
OpenAPI document and the browsable docs."""

import csv
import io
import zipfile
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from chatbot.apikeys.services import api_key_create
from chatbot.chat.conversations import conversation_resume_or_start, message_receive
from chatbot.dashboard.services import staff_member_save
from chatbot.leads.capture import lead_capture
from chatbot.models import ApprovedAnswer, Conversation, Lead, Message, Topic, TopicQuestion
from knowledge.embeddings import EMBEDDING_DIMENSIONS
from knowledge.models import Source
from tests.leads.conftest import GOOD, LEAD_FORM

from .conftest import ApiClient

# --- the document ---


def test_it_serves_an_openapi_3_document_of_every_route(acme):
    response = ApiClient(None).get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Parley API"
    paths = document["paths"]
    for path in (
        "/api/v1/bots/{slug}/ask", "/api/v1/conversations", "/api/v1/conversations/{conversation_id}/",
        "/api/v1/bots/{slug}/leads.csv", "/api/v1/bots/{slug}/sources/upload", "/api/v1/webhooks",
    ):  # fmt: skip
        assert path in paths, path
    assert "text/event-stream" in paths["/api/v1/bots/{slug}/ask"]["post"]["responses"]["200"]["content"]
    assert document["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"


def test_the_browsable_docs_load_swagger_ui_from_parley_itself(acme):
    page = ApiClient(None).get("/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn." not in html and "<script>" not in html  # nothing from elsewhere, nothing inline (strict CSP)
    assert "script-src 'self'" in page["Content-Security-Policy"]


# --- bots ---


def test_it_reads_a_bots_settings(api, acme):
    bot = api.get("/bots/acme").json()
    assert (bot["slug"], bot["name"], bot["allowed_origins"]) == ("acme", "Acme Support", ["https://www.acme.test"])
    assert acme.public_id in bot["embed_snippet"]
    assert "crm_webhook_secret" not in bot and "identity_secret" not in bot


def test_it_updates_only_the_settings_given(api, acme):
    response = api.patch(
        "/bots/acme",
        {"greeting": "Hello!", "temperature": 0.7, "stop_sequences": ["###"], "business_hours": {"timezone": "UTC"}},
    )
    assert response.status_code == 200, response.json()
    acme.refresh_from_db()
    assert (acme.greeting, acme.temperature, acme.stop_sequences) == ("Hello!", 0.7, ["###"])
    assert acme.business_hours == {"timezone": "UTC"}
    assert acme.name == "Acme Support" and acme.allowed_origins == ["https://www.acme.test"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": 5}, "temperature"),
        ({"allowed_origins": ["www.acme.test"]}, "allowed_origins"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"business_hours": {"timezone": "Mars/Olympus"}}, "business_hours"),
        ({"lead_form": {"fields": [{"name": "x", "type": "telepathy"}]}}, "lead_form"),
        ({"slug": "globex"}, "slug"),
        ({"notification_email": "not an email"}, "notification_email"),
    ],
)
def test_it_refuses_what_the_dashboard_form_refuses(api, acme, changes, field):
    response = api.patch("/bots/acme", changes)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"], body
    acme.refresh_from_db()
    assert acme.slug == "acme" and acme.temperature == 0.3


def test_a_body_of_the_wrong_type_gets_400_with_the_field(api, acme):
    response = api.patch("/bots/acme", {"temperature": "hot"})
    assert response.status_code == 400
    assert "temperature" in response.json()["errors"]


def test_it_lists_adds_and_removes_approved_answers(api, acme):
    created = api.post(
        "/bots/acme/approved-answers",
        {"question": "Do you ship abroad?", "answer": "Yes, to the EU.", "add_faq": False},
    )
    assert created.status_code == 201
    answer_id = created.json()["id"]
    assert [a["question"] for a in api.get("/bots/acme/approved-answers").json()] == ["Do you ship abroad?"]
    assert api.post("/bots/acme/approved-answers", {"question": "", "answer": "x"}).status_code == 400
    assert api.delete(f"/bots/globex/approved-answers/{answer_id}").status_code == 404  # not that bot's
    assert api.delete(f"/bots/acme/approved-answers/{answer_id}").status_code == 204
    assert not ApprovedAnswer.objects.exists()


# --- conversations ---


def _conversations(bot, count: int, *, text: str = "Do you ship to Norway?") -> list[Conversation]:
    made = []
    for n in range(count):
        conversation = conversation_resume_or_start(bot=bot, visitor_id=f"v{n}", page_url="https://www.acme.test/")
        message_receive(conversation=conversation, text=f"{text} #{n}", dispatch_answer=False, answer=False)
        Conversation.objects.filter(id=conversation.id).update(last_message_at=timezone.now() - timedelta(minutes=n))
        made.append(conversation)
    return made


def test_it_pages_through_conversations_newest_first(api, acme):
    made = _conversations(acme, 5)
    first = api.get("/conversations", {"limit": 2}).json()
    assert [c["id"] for c in first["items"]] == [made[0].id, made[1].id]
    assert first["next_offset"] == 2
    second = api.get("/conversations", {"limit": 2, "offset": 2}).json()
    last = api.get("/conversations", {"limit": 2, "offset": 4}).json()
    assert [c["id"] for c in second["items"] + last["items"]] == [c.id for c in made[2:]]
    assert last["next_offset"] is None
    # An offset page's cursor continues where it ended.
    after_second = api.get("/conversations", {"limit": 2, "cursor": second["next_cursor"]}).json()
    assert after_second["items"] == last["items"]
    assert first["items"][0]["preview"] == "Do you ship to Norway? #0"
    assert api.get("/conversations", {"limit": 0}).status_code == 400
    assert api.get("/conversations", {"limit": 101}).status_code == 400


def test_it_filters_conversations_as_the_dashboard_does(api, acme, globex):
    acme_rows = _conversations(acme, 2)
    globex_rows = _conversations(globex, 1, text="Where is my invoice?")
    Conversation.objects.filter(id=acme_rows[1].id).update(handoff_requested_at=timezone.now())
    Lead.objects.create(bot=acme, conversation=acme_rows[0], email="ada@example.com")

    def ids(**query):
        return {c["id"] for c in api.get("/conversations", query).json()["items"]}

    assert ids(bot="globex") == {globex_rows[0].id}
    assert ids(q="invoice") == {globex_rows[0].id}
    assert ids(handed_off="true") == {acme_rows[1].id}
    assert ids(has_lead="true") == {acme_rows[0].id}
    assert ids(**{"from": (timezone.localdate() + timedelta(days=1)).isoformat()}) == set()
    assert api.get("/conversations", {"from": "yesterday"}).status_code == 400


def test_it_pages_through_conversations_with_a_cursor(api, acme):
    made = _conversations(acme, 5)
    seen, cursor, pages = [], "", 0
    while True:
        page = api.get("/conversations", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["items"]]
        pages += 1
        if cursor:
            assert page["next_offset"] is None  # an offset means nothing after a cursor
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (pages, seen) == (3, [c.id for c in made])


def test_a_conversation_arriving_between_pages_does_not_shift_the_next_page(api, acme):
    made = _conversations(acme, 4)
    first = api.get("/conversations", {"limit": 2}).json()
    [newer] = _conversations(acme, 1, text="Anyone there?")
    Conversation.objects.filter(id=newer.id).update(last_message_at=timezone.now() + timedelta(minutes=1))
    second = api.get("/conversations", {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [c["id"] for c in second["items"]] == [made[2].id, made[3].id]


def test_it_refuses_a_bad_cursor_and_a_cursor_with_an_offset(api, acme):
    _conversations(acme, 3)
    cursor = api.get("/conversations", {"limit": 1}).json()["next_cursor"]
    assert api.get("/conversations", {"cursor": "not-a-cursor"}).status_code == 400
    both = api.get("/conversations", {"cursor": cursor, "offset": 1})
    assert both.status_code == 400 and "not both" in both.json()["detail"]


def test_it_filters_by_the_dashboards_inbox_views_status_and_topic(acme, globex):
    alan = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password").user
    _, key = api_key_create(name="alan's", user=alan)
    api = ApiClient(key)
    mine, unassigned, waiting, resolved = _conversations(acme, 4)
    Conversation.objects.filter(id=mine.id).update(assigned_to=alan)
    Conversation.objects.filter(id=waiting.id).update(assigned_to=alan, handoff_requested_at=timezone.now())
    Conversation.objects.filter(id=resolved.id).update(resolved_at=timezone.now())
    topic = Topic.objects.create(bot=acme, label="Shipping", centroid=[1.0] + [0.0] * (EMBEDDING_DIMENSIONS - 1))
    TopicQuestion.objects.create(
        topic=topic, message=unassigned.messages.first(), conversation=unassigned, asked_at=timezone.now()
    )

    def ids(**query):
        response = api.get("/conversations", query)
        assert response.status_code == 200, response.json()
        return {c["id"] for c in response.json()["items"]}

    assert ids(view="mine") == {mine.id, waiting.id}
    assert ids(view="unassigned") == {unassigned.id}  # open ones only: `resolved` is unassigned too
    assert ids(view="unassigned", status="resolved") == {resolved.id}
    assert ids(view="waiting") == {waiting.id}
    assert ids(status="open") == {mine.id, unassigned.id, waiting.id}
    assert ids(status="resolved") == {resolved.id}
    assert ids(topic=topic.id) == {unassigned.id}
    assert api.get("/conversations", {"view": "everyone"}).status_code == 400
    assert api.get("/conversations", {"status": "closed"}).status_code == 400


def test_view_mine_needs_a_key_made_by_a_staff_member(api, acme):
    _conversations(acme, 1)
    response = api.get("/conversations", {"view": "mine"})
    assert response.status_code == 400 and "no creator" in response.json()["detail"]


def test_a_key_lists_only_the_conversations_of_its_bots(acme_api, acme, globex):
    _conversations(acme, 1)
    [other] = _conversations(globex, 1)
    assert {c["bot"] for c in acme_api.get("/conversations").json()["items"]} == {"acme"}
    assert acme_api.get(f"/conversations/{other.id}/").status_code == 404


def test_it_returns_a_conversation_with_its_messages(api, acme):
    [conversation] = _conversations(acme, 1)
    body = api.get(f"/conversations/{conversation.id}/").json()
    assert body["id"] == conversation.id and body["bot"] == "acme"
    assert [(m["role"], m["text"]) for m in body["messages"]] == [("visitor", "Do you ship to Norway? #0")]
    assert body["page_url"] == "https://www.acme.test/"
    assert api.get("/conversations/nope/").status_code == 404


def test_a_staff_member_replies_through_the_api(api, acme):
    [conversation] = _conversations(acme, 1)
    staff_member_save(username="alan", role="agent", bots=[acme], display_name="Alan", password="x-long-password")
    staff_member_save(username="eve", role="agent", bots=[], password="x-long-password")

    response = api.post(
        f"/conversations/{conversation.id}/messages", {"text": "Hi, Alan here.", "staff_username": "alan"}
    )

    assert response.status_code == 201, response.json()
    assert (response.json()["role"], response.json()["staff_name"]) == ("staff", "Alan")
    conversation.refresh_from_db()
    assert conversation.taken_over_by.username == "alan"
    assert conversation.messages.filter(role=Message.Role.STAFF, text="Hi, Alan here.").exists()
    not_staff = api.post(f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "eve"})
    assert not_staff.status_code == 400
    staff_member_save(username="grace", role="admin", password="x-long-password")
    taken = api.post(f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "grace"})
    assert taken.status_code == 409


def _key_of(user, *, bots=None) -> ApiClient:
    _, key = api_key_create(name=f"{user.username}'s key", user=user, bots=bots)
    return ApiClient(key)


def test_a_reply_without_a_staff_username_is_written_by_the_keys_creator(acme, globex):
    [conversation] = _conversations(acme, 1)
    alan = staff_member_save(
        username="alan", role="agent", bots=[acme], display_name="Alan", password="x-long-password"
    )
    response = _key_of(alan.user, bots=[acme]).post(
        f"/conversations/{conversation.id}/messages", {"text": "Alan here."}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["staff_name"] == "Alan"
    conversation.refresh_from_db()
    assert conversation.taken_over_by_id == alan.user_id


def test_a_key_without_a_creator_must_name_the_staff_member(api, acme):
    [conversation] = _conversations(acme, 1)
    response = api.post(f"/conversations/{conversation.id}/messages", {"text": "Hello"})
    assert response.status_code == 400 and "staff_username" in response.json()["detail"]
    assert not conversation.messages.filter(role=Message.Role.STAFF).exists()


def test_a_key_for_some_bots_writes_only_as_its_creator(acme, globex):
    [conversation] = _conversations(acme, 1)
    alan = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password")
    staff_member_save(username="grace", role="admin", password="x-long-password")
    api = _key_of(alan.user, bots=[acme])
    as_admin = api.post(f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "grace"})
    assert as_admin.status_code == 400 and "every bot" in as_admin.json()["detail"]
    as_self = api.post(f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "alan"})
    assert as_self.status_code == 201
    _, unowned = api_key_create(name="acme, no creator", bots=[acme])
    anyone = ApiClient(unowned).post(
        f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "alan"}
    )
    assert anyone.status_code == 400


def test_a_keys_creator_who_lost_access_to_the_bot_cannot_write(acme, globex):
    [conversation] = _conversations(globex, 1)
    alan = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password")
    response = _key_of(alan.user).post(f"/conversations/{conversation.id}/messages", {"text": "Hi"})
    assert response.status_code == 400 and "'alan'" in response.json()["detail"]


def test_it_hands_a_conversation_back_to_the_bot(acme, globex):
    [conversation] = _conversations(acme, 1)
    alan = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password").user
    ada = staff_member_save(username="ada", role="agent", bots=[acme], password="x-long-password").user
    api = _key_of(alan, bots=[acme])
    assert api.post(f"/conversations/{conversation.id}/messages", {"text": "Alan here."}).status_code == 201

    refused = _key_of(ada, bots=[acme]).post(f"/conversations/{conversation.id}/handback")
    assert refused.status_code == 409
    response = api.post(f"/conversations/{conversation.id}/handback")
    assert response.status_code == 200, response.json()
    assert response.json()["taken_over_by"] is None
    conversation.refresh_from_db()
    assert conversation.taken_over_by is None
    # Handing back a conversation nobody has is no error.
    assert api.post(f"/conversations/{conversation.id}/handback").status_code == 200


def test_an_administrator_hands_back_a_conversation_someone_else_took_over(api, acme):
    [conversation] = _conversations(acme, 1)
    staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password")
    staff_member_save(username="grace", role="admin", password="x-long-password")
    assert (
        api.post(f"/conversations/{conversation.id}/messages", {"text": "Hi", "staff_username": "alan"}).status_code
        == 201
    )
    response = api.post(f"/conversations/{conversation.id}/handback", {"staff_username": "grace"})
    assert response.status_code == 200, response.json()
    conversation.refresh_from_db()
    assert conversation.taken_over_by is None


def test_a_read_only_key_cannot_hand_back(read_only_api, acme):
    [conversation] = _conversations(acme, 1)
    assert read_only_api.post(f"/conversations/{conversation.id}/handback").status_code == 403


# --- leads ---


def _lead(bot, email: str, *, visitor_id: str) -> Lead:
    conversation = conversation_resume_or_start(
        bot=bot, visitor_id=visitor_id, page_url="https://www.acme.test/?utm_source=x"
    )
    return lead_capture(conversation=conversation, fields={**GOOD, "email": email}).lead


@pytest.fixture
def lead_acme(acme):
    acme.lead_form = LEAD_FORM
    acme.save(update_fields=["lead_form"])
    return acme


def test_it_lists_a_bots_leads_with_paging_and_returns_one(api, lead_acme):
    leads = [_lead(lead_acme, f"lead{n}@example.com", visitor_id=f"v{n}") for n in range(3)]
    page = api.get("/bots/acme/leads", {"limit": 2}).json()
    assert page["count"] == 3 and len(page["items"]) == 2 and page["next_offset"] == 2
    assert api.get("/bots/acme/leads", {"limit": 2, "offset": 2}).json()["next_offset"] is None
    one = api.get(f"/bots/acme/leads/{leads[0].id}").json()
    assert one["email"] == "lead0@example.com" and one["fields"]["company"] == "Analytical Engines"
    assert one["utm"] == {"source": "x"}
    assert api.get(f"/bots/globex/leads/{leads[0].id}").status_code == 404
    assert api.get("/bots/acme/leads", {"consent": "maybe"}).status_code == 400


def test_it_exports_leads_as_csv(api, lead_acme):
    _lead(lead_acme, "ada@example.com", visitor_id="v1")
    response = api.get("/bots/acme/leads.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert row["email"] == "ada@example.com"


def test_it_deletes_a_visitors_data(api, lead_acme):
    lead = _lead(lead_acme, "ada@example.com", visitor_id="v1")
    _lead(lead_acme, "bob@example.com", visitor_id="v2")
    assert api.post("/bots/acme/visitor-data/delete", {}).status_code == 400
    response = api.post("/bots/acme/visitor-data/delete", {"email": "ada@example.com"})
    assert response.status_code == 200
    assert response.json() == {"conversations": 1, "messages": 0, "leads": 1}
    assert not Lead.objects.filter(id=lead.id).exists()
    assert Lead.objects.filter(email="bob@example.com").exists()


# --- knowledge ---


def test_it_adds_each_kind_of_source_and_reports_its_ingestion(api, acme):
    faq = api.post("/bots/acme/sources", {"kind": "faq", "question": "Do you ship abroad?", "answer": "Yes."})
    assert faq.status_code == 202 and faq.json()["status"] == "pending"
    page = api.post(
        "/bots/acme/sources", {"kind": "url", "url": "https://docs.acme.test/shipping", "resync_every_hours": 24}
    )
    sitemap = api.post("/bots/acme/sources", {"kind": "sitemap", "url": "https://docs.acme.test/sitemap.xml"})
    assert (page.status_code, sitemap.status_code) == (202, 202)
    upload = api.upload(
        "/bots/acme/sources/upload", {"file": SimpleUploadedFile("returns.md", b"# Returns\n\n30 days.")}
    )
    assert upload.status_code == 202 and upload.json()["kind"] == "file"
    kinds = [s["kind"] for s in api.get("/bots/acme/sources").json()]
    assert sorted(kinds) == ["faq", "file", "sitemap", "url"]
    Source.objects.filter(id=page.json()["id"]).update(status="running", documents_total=4, documents_done=1)
    status = api.get(f"/bots/acme/sources/{page.json()['id']}").json()
    assert (status["status"], status["documents_done"], status["documents_total"]) == ("running", 1, 4)


def _zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_it_unpacks_an_uploaded_zip_as_the_dashboard_does(api, acme, django_capture_on_commit_callbacks):
    archive = _zipped({
        "guides/shipping.md": b"# Shipping\n\nWe ship in three days.",
        "guides/returns.txt": b"Returns are free within 30 days.",
        "logo.png": b"\x89PNG....",
    })  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.upload("/bots/acme/sources/upload", {"file": SimpleUploadedFile("help.zip", archive)})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert sorted(s["title"] for s in body["sources"]) == [
        "help.zip › guides/returns.txt",
        "help.zip › guides/shipping.md",
    ]
    assert {s["status"] for s in body["sources"]} == {"pending"} and len(queued) == 2
    [refused] = body["refused"]
    assert "“help.zip › logo.png” was left out: not a document" in refused
    # The same archive again replaces its documents instead of adding them twice.
    with django_capture_on_commit_callbacks(execute=False):
        api.upload("/bots/acme/sources/upload", {"file": SimpleUploadedFile("help.zip", archive)})
    assert Source.objects.count() == 2


@pytest.mark.parametrize(
    ("archive", "why"),
    [
        (_zipped({"big.txt": b"0" * 5_000_000}), "refused as unsafe"),  # a bomb: 5 MB of zeros in a few kilobytes
        (b"PK\x03\x04 not really a zip", "is not a readable zip archive"),
        (_zipped({"logo.png": b"\x89PNG...."}), "“bundle.zip › logo.png” was left out"),
    ],
)
def test_an_uploaded_zip_with_nothing_to_add_gets_400_saying_why(api, acme, archive, why):
    response = api.upload("/bots/acme/sources/upload", {"file": SimpleUploadedFile("bundle.zip", archive)})
    assert response.status_code == 400
    assert why in response.json()["detail"]
    assert not Source.objects.exists()


def test_it_refuses_bad_sources_with_a_clear_message(api, acme):
    assert api.post("/bots/acme/sources", {"kind": "faq", "question": "q"}).status_code == 400
    assert api.post("/bots/acme/sources", {"kind": "url", "url": "ftp://x"}).status_code == 400
    unknown = api.post("/bots/acme/sources", {"kind": "dropbox", "url": "https://x.test"})
    assert unknown.status_code == 400 and "kind" in unknown.json()["errors"]


def test_it_adds_a_site_to_crawl_with_its_limits(api, acme):
    body = {"kind": "site", "url": "https://www.acme.test/", "max_pages": 40, "max_depth": 2,
            "include_patterns": ["/docs/*"], "exclude_patterns": ["/docs/old/*"]}  # fmt: skip
    response = api.post("/bots/acme/sources", body)
    assert response.status_code == 202, response.json()
    source = Source.objects.get(id=response.json()["id"])
    assert (source.kind, source.url, source.max_pages, source.max_depth) == ("site", "https://www.acme.test/", 40, 2)
    assert (source.include_patterns, source.exclude_patterns) == (["/docs/*"], ["/docs/old/*"])


def test_it_resyncs_and_removes_a_source(api, acme):
    created = api.post("/bots/acme/sources", {"kind": "url", "url": "https://docs.acme.test/a"}).json()
    Source.objects.filter(id=created["id"]).update(status="ready", documents_done=3)
    resynced = api.post(f"/bots/acme/sources/{created['id']}/resync")
    assert resynced.status_code == 202 and resynced.json()["status"] == "pending"
    assert api.delete(f"/bots/globex/sources/{created['id']}").status_code == 404
    assert api.delete(f"/bots/acme/sources/{created['id']}").status_code == 204
    assert not Source.objects.filter(id=created["id"]).exists()
