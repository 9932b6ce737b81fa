"""The API against a real Parley: Daphne serving /api/v1/, a Celery worker answering from the TGI simulator, the
bot's knowledge ingested by the worker. `ask` as JSON and as Server-Sent Events, follow-ups, approved answers, a
request for a person; then every curl example of docs/api.md, run by curl.

Daphne and the worker are other processes: the module commits its data (database unblocked) and flushes it at the
end, like the browser tests."""

import json
import os
import re
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from chatbot.apikeys.services import api_key_create
from chatbot.bots.services import bot_create
from chatbot.chat.identity import visitor_id_of_user
from chatbot.dashboard.services import staff_member_save
from chatbot.models import Bot, Conversation, Message, WebhookSubscription
from devtools.browser import eventually
from devtools.pytest_plugin import start_celery_worker, start_daphne
from devtools.stack import ServerProcess
from devtools.tgi_simulator import TGISimulator
from knowledge.models import Source
from knowledge.services import source_add_faq
from knowledge.tasks import ingest_source
from tests.leads.conftest import CRM

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

ANSWER = "Yes: we ship to every country in the European Union [1]."
DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


@dataclass
class Live:
    daphne: ServerProcess
    worker: ServerProcess
    sim: TGISimulator
    bot: Bot
    key: str
    receiver: CRM
    subscription: WebhookSubscription

    @property
    def url(self) -> str:
        return self.daphne.url

    def ask(self, body: dict, **headers) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/bots/acme/ask",
            json=body,
            headers={"Authorization": f"Bearer {self.key}", **headers},
            timeout=60,
        )


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Live]:
    logs = tmp_path_factory.mktemp("api-logs")
    redis_url = settings.REDIS_URL
    redis.Redis.from_url(redis_url).flushdb()
    env = {"REDIS_URL": redis_url, "PARLEY_ALLOW_PRIVATE_URLS": "1", "API_ASK_TIMEOUT_S": "60"}
    receiver = CRM().start()
    with django_db_blocker.unblock(), TGISimulator() as sim:
        sim.configure(ttft_s=0.02, tokens_per_s=200, script_text=ANSWER)
        started: list[ServerProcess] = []
        try:
            bot = bot_create(
                slug="acme", name="Acme Outdoor", model_endpoint=sim.url, allowed_origins=["https://www.acme.test"]
            )
            faq = source_add_faq(
                knowledge_base=bot.knowledge_base,
                question="Do you ship abroad?",
                answer="Yes. We ship to every country in the European Union.",
            )
            staff_member_save(username="alan", role="agent", bots=[bot], display_name="Alan", password="x-long-pw-1")
            _, key = api_key_create(name="live")
            subscription = WebhookSubscription.objects.create(
                bot=bot, url=receiver.url, events=["lead.created"], allow_private_addresses=True
            )
            with ThreadPoolExecutor(2) as pool:
                futures = [
                    pool.submit(start_daphne, log_path=logs / "daphne.log", **env),
                    pool.submit(start_celery_worker, log_path=logs / "worker.log", concurrency=4, **env),
                ]
                started = [future.result() for future in futures if future.exception() is None]
                if len(started) < 2:
                    raise next(future.exception() for future in futures if future.exception() is not None)
            ingest_source.delay(faq.id)
            eventually(lambda: Source.objects.get(id=faq.id).status == "ready", timeout_s=90, what="ingestion")
            yield Live(
                daphne=started[0], worker=started[1], sim=sim, bot=bot, key=key, receiver=receiver,
                subscription=subscription,
            )  # fmt: skip
        finally:
            for server in started:
                server.process.terminate()
            for server in started:
                server.stop()
            receiver.stop()
            call_command("flush", interactive=False, verbosity=0)
            redis.Redis.from_url(redis_url).flushdb()
            connections.close_all()


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: ") :])))
    return events


def test_it_answers_through_the_widgets_pipeline_as_json(live):
    response = live.ask({"question": "Do you ship abroad?"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == ANSWER and body["status"] == "complete"
    assert body["citations"] == [{"n": 1, "title": "Do you ship abroad?", "url": ""}]
    conversation = Conversation.objects.get(id=body["conversation_id"])
    answer = Message.objects.get(id=body["message_id"])
    assert (answer.conversation_id, answer.role, answer.status, answer.text) == (
        conversation.id,
        "bot",
        "complete",
        ANSWER,
    )
    assert answer.retrieved and answer.prompt  # retrieval and the model, as for the widget


def test_a_follow_up_continues_the_conversation(live):
    first = live.ask({"question": "Do you ship abroad?"}).json()
    second = live.ask({"question": "And to Norway?", "conversation_id": first["conversation_id"]}).json()

    assert second["conversation_id"] == first["conversation_id"]
    roles = list(Message.objects.filter(conversation_id=first["conversation_id"]).values_list("role", flat=True))
    assert roles == ["visitor", "bot", "visitor", "bot"]
    # The model saw the earlier exchange.
    prompt = Message.objects.get(id=second["message_id"]).prompt
    assert any("Do you ship abroad?" in part["content"] for part in prompt[1:])
    unknown = live.ask({"question": "Hello?", "conversation_id": "not-a-conversation"})
    assert unknown.status_code == 404


def test_it_streams_the_answer_as_server_sent_events(live):
    with httpx.stream(
        "POST",
        f"{live.url}/api/v1/bots/acme/ask",
        json={"question": "Do you ship abroad?"},
        headers={"Authorization": f"Bearer {live.key}", "Accept": "text/event-stream"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)

    kinds = [kind for kind, _ in events]
    assert kinds[0] == "ack" and kinds[-1] == "done" and "token" in kinds
    assert set(kinds[1:-1]) == {"token"}
    done = events[-1][1]
    tokens = "".join(data["text"] for kind, data in events if kind == "token")
    assert tokens == done["text"] == ANSWER
    assert done["status"] == "complete" and done["conversation_id"] == events[0][1]["conversation_id"]
    assert {data["message_id"] for kind, data in events if kind == "token"} == {done["message_id"]}


def test_an_approved_answer_comes_back_verbatim_without_the_model(live):
    headers = {"Authorization": f"Bearer {live.key}"}
    created = httpx.post(
        f"{live.url}/api/v1/bots/acme/approved-answers",
        json={"question": "Can I pay by invoice?", "answer": "Yes: within 30 days.", "add_faq": False},
        headers=headers,
        timeout=60,
    )
    assert created.status_code == 201, created.text
    body = live.ask({"question": "Can I pay by invoice?"}).json()
    assert body["text"] == "Yes: within 30 days."
    assert Message.objects.get(id=body["message_id"]).finish_reason == "approved_answer"


def test_a_request_for_a_person_is_a_handoff_not_a_question(live):
    body = live.ask({"question": "Can I talk to a human?"}).json()
    assert body["status"] == "handoff_unavailable" and body["message_id"] is None
    assert "Nobody from the team is available" in body["text"]
    conversation = Conversation.objects.get(id=body["conversation_id"])
    assert conversation.handoff_requested_at is not None


def test_a_visitor_id_is_the_same_visitor_as_the_widgets_verified_user(live):
    visitor = {"id": "user-42", "name": "Ada Lovelace", "email": "ada@example.com"}
    first = live.ask({"question": "Do you ship abroad?", "visitor": visitor}).json()
    again = live.ask({"question": "Thanks!", "visitor": {"id": "user-42"}}).json()
    assert again["conversation_id"] == first["conversation_id"]
    conversation = Conversation.objects.get(id=first["conversation_id"])
    assert conversation.visitor_id == visitor_id_of_user("user-42")
    assert (conversation.visitor_verified, conversation.visitor_name) == (True, "Ada Lovelace")


def _curl_blocks() -> list[str]:
    return [block for block in re.findall(r"```sh\n(.*?)```", DOC, flags=re.S) if "curl" in block]


def test_every_curl_example_of_the_docs_works(live, tmp_path):
    conversation = live.ask({"question": "Do you ship abroad?"}).json()["conversation_id"]
    source = Source.objects.filter(knowledge_base=live.bot.knowledge_base).order_by("id").first()
    subscription = live.subscription  # made by the fixture: what this test writes is not committed
    (tmp_path / "returns.md").write_text("# Returns\n\nYou can return any item within 30 days.\n")
    with zipfile.ZipFile(tmp_path / "handbook.zip", "w") as handbook:
        handbook.writestr("policies/returns.md", "# Returns\n\nYou can return any item within 30 days.\n")
        handbook.writestr("logo.png", b"\x89PNG....")
    env = {
        **os.environ,
        "PARLEY_URL": live.url,
        "PARLEY_KEY": live.key,
        "CONVERSATION_ID": conversation,
        "SOURCE_ID": str(source.id),
        "SUBSCRIPTION_ID": str(subscription.id),
    }
    blocks = _curl_blocks()
    assert len(blocks) >= 15
    for block in blocks:
        # The docs' receiver stands for a CRM on the internet; here it is the test's, on 127.0.0.1.
        script = block.replace("https://crm.example.com/parley-events", live.receiver.url)
        result = subprocess.run(
            ["bash", "-c", 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n' + script],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{block}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        output = result.stdout.strip() or (tmp_path / "leads.csv").read_text()
        assert output, block
        if "text/event-stream" not in block and "-o leads.csv" not in block:
            json.loads(output)  # every other example answers JSON
    assert (tmp_path / "leads.csv").read_text().startswith('"id","created_at"')
    live.bot.refresh_from_db()
    assert live.bot.strict_mode and live.bot.greeting.startswith("Hi! Ask me")
    assert WebhookSubscription.objects.filter(url=live.receiver.url).count() == 2
