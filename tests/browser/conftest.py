"""One Chromium for the browser tests, driven by Playwright.

Without Debian's Chromium the browser tests skip with the reason shown in the summary; with
PARLEY_REQUIRE_BROWSER=1 (set by CI, where a missing browser means a broken set-up) they fail instead.

Playwright's sync API runs an event loop in the main thread for as long as it is open, and Django refuses
synchronous database work (creating the test database, every ORM call) while a loop runs in its thread. So the
browser is shared by the tests of this package only (package scope: closed before the next package's tests run),
and it is started after the test database exists.
"""

from collections.abc import Iterator

import pytest

from devtools.browser import chromium


@pytest.fixture(scope="package")
def browser(django_db_setup) -> Iterator:
    with chromium() as launched:
        yield launched


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # A failure in the browser often has its explanation in a server's log: show it with the failure.
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and hasattr(stack, "logs"):
        report.sections.append(("Parley server logs", stack.logs()))
    return report
