"""Set-up for the REST API tests: two bots, keys of every kind, a client that sends a key, and a local HTTP receiver
for webhooks."""

import pytest
from django.test import Client

from chatbot.apikeys.services import api_key_create
from chatbot.bots.services import bot_create
from chatbot.realtime.connections import sync_client
from tests.leads.conftest import CRM


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    """Rate counters live in Redis, across tests (and key ids restart with each test database)."""
    client = sync_client()
    keys = list(client.scan_iter("parley:rate:api:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def acme(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=["https://www.acme.test"])


@pytest.fixture
def globex(db):
    return bot_create(slug="globex", name="Globex Help", allowed_origins=["https://www.globex.test"])


class ApiClient:
    """Django's test client with `Authorization: Bearer <key>` on every request."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.client = Client()

    def _headers(self, headers: dict) -> dict:
        return {**({"Authorization": f"Bearer {self.key}"} if self.key else {}), **headers}

    def get(self, path: str, data=None, **headers):
        return self.client.get(f"/api/v1{path}", data, headers=self._headers(headers))

    def post(self, path: str, json=None, **headers):
        return self.client.post(
            f"/api/v1{path}", json if json is not None else {}, content_type="application/json",
            headers=self._headers(headers),
        )  # fmt: skip

    def patch(self, path: str, json: dict, **headers):
        return self.client.patch(
            f"/api/v1{path}", json, content_type="application/json", headers=self._headers(headers)
        )

    def delete(self, path: str, **headers):
        return self.client.delete(f"/api/v1{path}", headers=self._headers(headers))

    def upload(self, path: str, files: dict, **headers):
        return self.client.post(f"/api/v1{path}", files, headers=self._headers(headers))


@pytest.fixture
def api(acme, globex) -> ApiClient:
    """A read-write key for every bot."""
    _, key = api_key_create(name="everything")
    return ApiClient(key)


@pytest.fixture
def acme_api(acme, globex) -> ApiClient:
    """A read-write key for acme only."""
    _, key = api_key_create(name="acme only", bots=[acme])
    return ApiClient(key)


@pytest.fixture
def read_only_api(acme, globex) -> ApiClient:
    _, key = api_key_create(name="reader", read_only=True)
    return ApiClient(key)


@pytest.fixture
def receiver():
    server = CRM().start()
    yield server
    server.stop()
