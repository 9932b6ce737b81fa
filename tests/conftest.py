import pytest

from chatbot.bots.services import bot_create
from chatbot.ops.health import health_cache_clear
from chatbot.realtime.connections import sync_client
from chatbot.realtime.keys import PRESENCE_ADMINS_KEY
from devtools.pytest_plugin import django_db_setup  # noqa: F401  (see below)
from devtools.tgi_simulator import TGISimulator
from inference.client import forget_endpoint
from tests.chatbot import stop_requests_forget

# django_db_setup: the plugin's template-database fixture. From the plugin it loses to pytest-django's own (that
# plugin registers later); from a conftest it wins.


@pytest.fixture(autouse=True)
def _nobody_online():
    """Presence lives in Redis, across tests and test runs (a dashboard socket counts for a minute): start each test
    with nobody online, so that a handoff request from a test finds nobody unless the test opens a dashboard."""
    client = sync_client()
    keys = list(client.scan_iter(PRESENCE_ADMINS_KEY.rsplit(":", 1)[0] + ":*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_health_reports():
    """/healthz keeps what the workers and the model server said for a few seconds: not from one test to the next."""
    health_cache_clear()


@pytest.fixture
def bot(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=["https://www.acme.test"])


@pytest.fixture(scope="module")
def running_simulator():
    """One TGI simulator per test module (see `sim`)."""
    with TGISimulator() as simulator:
        yield simulator


@pytest.fixture
def sim(running_simulator, settings):
    """The TGI simulator as this instance's TGI_URL: reset, listening, with no stale stop requests and nothing
    cached about the endpoint from an earlier test."""
    stop_requests_forget()
    running_simulator.reset()
    running_simulator.start_listening()
    forget_endpoint()
    settings.TGI_URL = running_simulator.url
    yield running_simulator
    running_simulator.start_listening()
