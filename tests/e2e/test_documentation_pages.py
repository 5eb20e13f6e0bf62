"""Each service's documentation pages in a real browser with the network cut off from
everything but 127.0.0.1: Swagger UI (`/docs`) and the AsyncAPI page (`/docs/asyncapi`)
render from the service's own assets and list the operations and channels. The console
serves no API, so no /docs."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

#: A few operations each /docs page must list (method, path).
OPERATIONS = {
    "intake": [("POST", "/v1/cases"), ("PATCH", "/v1/cases/{case_id}")],
    "referral": [("PUT", "/v1/webhook"), ("POST", "/v1/referrals/{referral_id}/accept")],
    "notify": [("POST", "/v1/inbound-sms"), ("POST", "/v1/delivery-receipts")],
}


async def _local_only(page: Page) -> list[str]:
    """Abort any request that would leave 127.0.0.1; returns the list of those tried."""
    blocked: list[str] = []

    async def guard(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            blocked.append(url)
            await route.abort()

    await page.route("**/*", guard)
    return blocked


@pytest.mark.parametrize("service", ["intake", "referral", "notify"])
async def test_swagger_ui_renders_from_the_service_itself(
    page: Page, stack: Stack, service: str
) -> None:
    blocked = await _local_only(page)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    response = await page.goto(f"{stack.urls[service]}/docs")
    assert response is not None
    assert response.ok
    await page.wait_for_selector(".opblock", state="attached")
    for method, path in OPERATIONS[service]:
        block = page.locator(f".opblock-{method.lower()}", has_text=path).first
        await block.wait_for(state="attached")
    assert await page.locator(".swagger-ui .info .title").count() == 1
    assert blocked == []
    assert failed == []


@pytest.mark.parametrize("service", ["intake", "referral", "notify"])
async def test_the_asyncapi_page_renders_from_the_service_itself(
    page: Page, stack: Stack, service: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.urls[service], timeout=10) as client:
        document = (await client.get("/v1/asyncapi.json")).json()
    blocked = await _local_only(page)
    response = await page.goto(f"{stack.urls[service]}/docs/asyncapi")
    assert response is not None
    assert response.ok
    text = await page.inner_text("body")
    addresses = [c["address"] for c in document.get("channels", {}).values() if "address" in c]
    assert addresses, "the document names its channels"
    for address in addresses:
        assert address in text
    assert blocked == []
    # and the /docs page links to it
    await page.goto(f"{stack.urls[service]}/docs")
    await page.get_by_role("link", name="the AsyncAPI documentation").click()
    await page.wait_for_url("**/docs/asyncapi")
    assert blocked == []


async def test_the_console_serves_no_api_documentation(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.urls["console"], timeout=10) as client:
        for path in ("/docs", "/docs/asyncapi", "/openapi.json", "/redoc"):
            assert (await client.get(path)).status_code == 404, path
