"""Real Chromium for the browser tests (Debian's package, driven by Playwright), in one place.

Without /usr/bin/chromium the browser tests skip with the reason shown in the summary; with PARLEY_REQUIRE_BROWSER=1
(set by .ci/run, where a missing browser means a broken set-up) they fail instead.
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's hosts, refused on this machine's network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_required_or_skip() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: `apt-get install -y chromium` to run the browser tests"
    if os.environ.get("PARLEY_REQUIRE_BROWSER", "").strip().lower() in {"1", "true", "yes", "on"}:
        pytest.fail(f"{reason} (PARLEY_REQUIRE_BROWSER=1 requires them)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium() -> Iterator:
    """A launched headless Chromium (a Playwright `Browser`), closed on exit."""
    chromium_required_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def eventually(check: Callable[[], object], *, timeout_s: float = 10.0, what: str = "condition"):
    """Poll `check` until it returns something truthy (returned), or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result
