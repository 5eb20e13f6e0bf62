"""A real browser for the tests: Debian's Chromium driven by Playwright's async API.

Loaded for every test tier as a pytest plugin (the root conftest.py names it), so any
test may ask for:

- `browser`: one headless Chromium for the whole session (starting one costs a second
  or two);
- `browser_context`: a fresh context per test (its own cookies, storage and cache), so
  tests never see each other's sign-ins;
- `page`: a new tab in that context.

The browser is the machine's `chromium` (`make browser` installs Debian's package);
Playwright's own browser downloads are never used. Playwright's objects belong to the
event loop they were made in, so the browser lives in pytest-asyncio's session loop, and
every test that asks for one of these fixtures is run in that loop too: the hook below
marks it, so a browser test is written as a plain `async def test_…(page: Page)`.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

#: Headless Chromium as a test needs it: no sandbox (tests run as root in CI), no GPU,
#: /tmp instead of a small /dev/shm, and nothing that calls out to Google's services.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
BROWSER_FIXTURES = frozenset({"browser", "browser_context", "page"})
#: Long enough for a page of the console on a busy two-core machine; short enough that a
#: missing element fails the test soon.
DEFAULT_TIMEOUT_MS = 15_000


def chromium_path() -> str:
    """The machine's Chromium, or a failure that says how to get it."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("no `chromium` on PATH: `make browser` installs Debian's package")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run each test that uses the browser in the session's event loop (the browser's)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROWSER_FIXTURES and inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh context (cookies, storage, cache) for one test."""
    context = await browser.new_context()
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser_context: BrowserContext) -> Page:
    """A new tab in the test's own context (closed with the context)."""
    return await browser_context.new_page()
