"""API keys: the command, hashing, the 401s, reach (404 outside it), read-only keys, last use, revocation and the
per-key rate limit."""

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chatbot.apikeys.services import api_key_create, api_key_revoke
from chatbot.dashboard.services import staff_member_save
from chatbot.models import ApiKey
from tests.rate_windows import clear_of_window_end_now

from .conftest import ApiClient


def create_key(*args: str) -> tuple[str, list[str]]:
    out = io.StringIO()
    call_command("createapikey", *args, stdout=out)
    lines = out.getvalue().splitlines()
    return lines[-1], lines


def test_it_prints_the_key_alone_on_the_last_line_and_stores_only_its_hash(acme, globex):
    key, lines = create_key("CRM sync", "--bot", "acme", "--read-only")

    assert key.startswith("pk_") and " " not in key and len(key) > 40
    assert key not in "\n".join(lines[:-1])
    api_key = ApiKey.objects.get()
    assert (api_key.name, api_key.read_only) == ("CRM sync", True)
    assert [bot.slug for bot in api_key.bots.all()] == ["acme"]
    assert api_key.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiKey.objects.values().get())


def test_the_command_refuses_an_unknown_bot(acme):
    with pytest.raises(CommandError, match="nope"):
        create_key("x", "--bot", "nope")
    assert not ApiKey.objects.exists()


def test_the_command_makes_a_key_that_belongs_to_a_staff_member(acme):
    alan = staff_member_save(username="alan", role="agent", bots=[acme], password="x-long-password").user
    create_key("Helpdesk", "--created-by", "alan")
    assert ApiKey.objects.get().created_by == alan
    with pytest.raises(CommandError, match="nobody"):
        create_key("x", "--created-by", "nobody")
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer pk_nope_nope", "Basic dXNlcjpwYXNz", "Bearer x"])
def test_a_missing_or_bad_key_gets_401_json(acme, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = ApiClient(None).get("/bots", **headers)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Unauthorized"}


def test_a_key_with_the_right_prefix_but_wrong_secret_gets_401(acme):
    _, key = api_key_create(name="k")
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    assert ApiClient(forged).get("/bots").status_code == 401
    assert ApiClient(key).get("/bots").status_code == 200


def test_a_revoked_key_gets_401(acme):
    api_key, key = api_key_create(name="k")
    api_key_revoke(api_key=api_key)
    assert ApiClient(key).get("/bots").status_code == 401


def test_a_key_records_when_it_was_last_used(acme):
    api_key, key = api_key_create(name="k")
    assert api_key.last_used_at is None
    before = timezone.now()
    ApiClient(key).get("/bots")
    api_key.refresh_from_db()
    assert api_key.last_used_at >= before


def test_a_key_sees_only_its_bots_and_gets_404_for_others(acme_api, acme, globex):
    assert [bot["slug"] for bot in acme_api.get("/bots").json()] == ["acme"]
    assert acme_api.get("/bots/acme").status_code == 200
    for path in ("/bots/globex", "/bots/globex/leads", "/bots/globex/sources", "/bots/globex/approved-answers"):
        response = acme_api.get(path)
        assert response.status_code == 404, path
        assert "detail" in response.json()
    assert acme_api.post("/bots/globex/ask", {"question": "hi"}).status_code == 404
    assert acme_api.patch("/bots/globex", {"name": "Mine"}).status_code == 404


def test_a_read_only_key_reads_but_changes_nothing(read_only_api, acme):
    assert read_only_api.get("/bots/acme").status_code == 200
    response = read_only_api.patch("/bots/acme", {"name": "Renamed"})
    assert response.status_code == 403
    assert response.json() == {"detail": "This API key is read-only."}
    assert read_only_api.post("/bots/acme/ask", {"question": "hi"}).status_code == 403
    assert read_only_api.post("/bots/acme/sources", {"kind": "faq", "question": "q", "answer": "a"}).status_code == 403
    acme.refresh_from_db()
    assert acme.name == "Acme Support"


def test_each_key_has_its_own_rate_limit(acme, settings):
    settings.API_REQUESTS_PER_MINUTE_PER_KEY = 3
    clear_of_window_end_now(60)
    _, first = api_key_create(name="first")
    _, second = api_key_create(name="second")
    statuses = [ApiClient(first).get("/bots").status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    limited = ApiClient(first).get("/bots")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 61
    assert "Too many requests" in limited.json()["detail"]
    assert ApiClient(second).get("/bots").status_code == 200  # another key is not held back
