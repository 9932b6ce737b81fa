# The shared Chromium of the browser tests (skips without it unless PARLEY_REQUIRE_BROWSER=1). Package scope: the
# browser is closed before the other lead tests, which need Django's synchronous ORM in the main thread.
from tests.browser.conftest import browser, pytest_runtest_makereport  # noqa: F401
