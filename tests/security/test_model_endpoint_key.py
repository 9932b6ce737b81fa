"""The instance's TGI_API_KEY goes to TGI_URL and nowhere else: a bot pointed at another model server sends that
server the bot's own key (or none). Real HTTP to two TGI simulators, one the instance's, one a bot's."""

import pytest

from chatbot.answers.pipeline import answer_generate
from chatbot.bots.services import bot_create
from devtools.tgi_simulator import TGISimulator
from inference.client import forget_endpoint
from tests.chatbot import question_ask

pytestmark = pytest.mark.django_db(transaction=True)
INSTANCE_KEY = "instance-token-0123456789"


@pytest.fixture
def other_server():
    with TGISimulator() as simulator:
        simulator.start_listening()
        yield simulator


def _keys_received(simulator) -> set[str]:
    return {(record["headers"].get("Authorization") or record["headers"].get("authorization") or "") for record in
            simulator.requests}  # fmt: skip


def _answer(bot) -> None:
    forget_endpoint()
    answer_generate(message_id=question_ask(bot, "What are your opening hours?").id)


def test_a_bots_own_endpoint_never_receives_the_instances_key(sim, other_server, settings):
    settings.TGI_API_KEY = INSTANCE_KEY
    own = bot_create(slug="own", name="Own", model_endpoint=other_server.url, model_api_key="bot-token-abc")
    keyless = bot_create(slug="keyless", name="Keyless", model_endpoint=other_server.url + "/")
    for bot in (own, keyless):
        _answer(bot)
    received = _keys_received(other_server)
    assert other_server.generation_requests() and received
    assert not [key for key in received if INSTANCE_KEY in key]
    assert "Bearer bot-token-abc" in received
    assert sim.requests == []  # nothing of theirs went to the instance's server either


def test_the_instances_server_gets_the_instances_key(sim, settings):
    settings.TGI_API_KEY = INSTANCE_KEY
    _answer(bot_create(slug="plain", name="Plain"))
    assert sim.generation_requests()
    assert _keys_received(sim) == {f"Bearer {INSTANCE_KEY}"}
