"""The browser runs: Chromium renders a local page, runs its script and keeps each
test's cookies to itself. (The console's own pages are tested in their own modules.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html lang="id">
<head><meta charset="utf-8"><title>Lintas: uji peramban</title></head>
<body>
  <h1>Halo, Lintas</h1>
  <p id="script"></p>
  <button id="press" type="button">Tekan</button>
  <p id="pressed" hidden>Sudah ditekan</p>
  <script>
    document.getElementById("script").textContent = "Skrip berjalan";
    document.getElementById("press").addEventListener("click", () => {
      document.getElementById("pressed").hidden = false;
      document.cookie = "pressed=yes; path=/";
    });
  </script>
</body>
</html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tiny static site on 127.0.0.1 (a free port), served by Python's http.server."""
    root: Path = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_chromium_renders_a_local_page_and_runs_its_script(page: Page, site: str) -> None:
    response = await page.goto(f"{site}/index.html")
    assert response is not None
    assert response.status == 200
    assert await page.title() == "Lintas: uji peramban"
    assert await page.inner_text("h1") == "Halo, Lintas"
    assert await page.inner_text("#script") == "Skrip berjalan"
    assert not await page.is_visible("#pressed")
    await page.get_by_role("button", name="Tekan").click()
    assert await page.inner_text("#pressed") == "Sudah ditekan"


async def test_each_context_keeps_its_cookies_to_itself(
    browser: Browser, browser_context: BrowserContext, page: Page, site: str
) -> None:
    await page.goto(f"{site}/index.html")
    await page.click("#press")
    assert [c["name"] for c in await browser_context.cookies()] == ["pressed"]
    other = await browser.new_context()
    try:
        assert await other.cookies() == []
    finally:
        await other.close()
