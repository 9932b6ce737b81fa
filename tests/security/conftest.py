"""The staff fixtures of tests/dashboard, for the access tests here."""

from tests.dashboard.conftest import (  # noqa: F401 - fixtures
    PASSWORD,
    admin,
    agent,
    agent_with_leads,
    conversation,
    logged_in,
    other_agent,
    other_bot,
    outsider,
    staff_socket,
    superuser,
)
