"""Django's PostgreSQL backend, with a cheaper health check of a pooled connection.

With CONN_HEALTH_CHECKS, Django has psycopg_pool run `ConnectionPool.check_connection` on every connection it hands
out: an empty statement, one round trip, before a visitor's message is saved and before each answer loads its
message. `connection_alive` makes that round trip only when something has arrived on the connection while it sat
in the pool. A healthy idle connection receives nothing; one PostgreSQL ended (a restart, a terminated backend, an
idle timeout) has its notice or its end waiting, and then the full check runs, fails, and the pool opens another,
so a restarted PostgreSQL still costs no request.

    DATABASES["default"]["ENGINE"] = "chatbot.ops.postgresql"
"""

import select

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def connection_alive(conn: psycopg.Connection) -> None:
    """Return quietly if `conn` can be used, raise otherwise (as `ConnectionPool.check_connection`)."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    waiting = select.poll()
    waiting.register(conn.pgconn.socket, select.POLLIN)
    if waiting.poll(0):
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):  # Django's (5.2), with `connection_alive` as the pool's check
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # as Django's: it sets autocommit properly later
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=connection_alive if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                **({} if pool_options is True else pool_options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
