"""A pooled connection is checked before it is handed out without a round trip, unless something arrived on it
while it sat in the pool: then the full check runs, and a connection PostgreSQL ended is replaced."""

import time

import psycopg
import pytest
from django.db import connection

from chatbot.ops.postgresql.base import DatabaseWrapper, connection_alive

pytestmark = pytest.mark.django_db(transaction=True)


def new_connection() -> psycopg.Connection:
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def last_statement_of(pid: int) -> str:
    with new_connection() as observer:
        return observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def ended(pids: list[int]) -> None:
    """End those server processes, as a restart or an idle timeout would, and wait until they are gone."""
    with new_connection() as observer:
        observer.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        deadline = time.monotonic() + 10
        while observer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]).fetchone()[0]:
            assert time.monotonic() < deadline, "the server processes did not end"
            time.sleep(0.02)


def test_a_healthy_idle_connection_is_checked_without_a_statement():
    with new_connection() as idle:
        idle.execute("SELECT 'the last statement'")

        connection_alive(idle)

        assert last_statement_of(idle.info.backend_pid) == "SELECT 'the last statement'"


def test_a_connection_whose_server_process_ended_fails_the_check():
    with new_connection() as idle:
        ended([idle.info.backend_pid])

        with pytest.raises(psycopg.OperationalError):
            connection_alive(idle)


def test_a_pool_whose_connections_were_ended_hands_out_new_ones():
    """Parley's backend as its processes run it, with a pool (the test settings have none)."""
    settings_dict = {
        **connection.settings_dict,
        "CONN_MAX_AGE": 0,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 2, "max_size": 2}},
    }
    pooled_database = DatabaseWrapper(settings_dict)
    try:
        pooled_database.pool.open(wait=True)
        with pooled_database.pool.connection() as one, pooled_database.pool.connection() as other:
            pooled = [one.info.backend_pid, other.info.backend_pid]
        ended(pooled)

        with pooled_database.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] not in pooled
    finally:
        pooled_database.close()
        pooled_database.close_pool()
