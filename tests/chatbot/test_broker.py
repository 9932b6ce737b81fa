"""The Celery broker: tasks travel through kombu's Redis transport, which keeps one Redis client per channel."""

import uuid

from chatbot.celery import app
from chatbot.realtime import broker


def test_messages_go_through_the_broker_and_back_on_one_redis_client_per_channel():
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)
        queue = connection.SimpleQueue(f"test-broker-{uuid.uuid4().hex}")
        try:
            channel = queue.channel
            queue.put({"n": 0})
            client = channel._commands_client
            assert client is not None
            for n in range(1, 3):
                queue.put({"n": n})
            received = []
            for _ in range(3):
                message = queue.get(timeout=5)
                received.append(message.payload["n"])
                message.ack()
            assert received == [0, 1, 2]
            assert channel._commands_client is client, "publishing, reading and acknowledging reuse the client"

            # After a fork or a lost connection kombu replaces the channel's pool: the client follows it.
            channel._disconnect_pools()
            queue.put({"n": 3})
            assert channel._commands_client is not client
            assert channel._commands_client.connection_pool is channel.pool
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"n": 3}
        finally:
            queue.queue.delete()
            queue.close()
