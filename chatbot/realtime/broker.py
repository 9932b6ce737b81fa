"""The Celery broker's transport: kombu's Redis transport, with one redis-py client per channel.

kombu 5.7 builds a new `redis.Redis` for every command it sends outside its consuming loop: each task published by
Daphne, and each task the worker reserves (its unacked record) and acknowledges. redis-py 8 fills a table of about 170
response callbacks in every client it builds: about a fifth of queueing an answer's task, and a seventh of the
worker's Celery work around each task (py-spy; bench/broker_dispatch.py measures the difference). The clients share
the channel's connection pool either way, and a `redis.Redis` is safe to share between threads, so a channel keeps
one, and builds it again when kombu replaces the pool (after a fork or a lost connection). Settings name it as
`CELERY_BROKER_TRANSPORT`.
"""

from contextlib import contextmanager

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _commands_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        pool = self.pool
        commands_client = self._commands_client
        if commands_client is None or commands_client.connection_pool is not pool:
            commands_client = self._commands_client = self._create_client()
        yield commands_client


class Transport(kombu_redis.Transport):
    Channel = Channel
