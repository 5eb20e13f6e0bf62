"""Driving the console in a real browser: sign in, fill the case form, run axe, weigh
a page, take screenshots."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Page, Response

from tests.support.servers import REPO_ROOT

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / ".lintas" / "screenshots"
#: The issue's budget for a page's HTML, CSS and JavaScript together, uncompressed.
PAGE_BUDGET_BYTES = 150 * 1024


async def sign_in(page: Page, console_url: str, who: dict[str, str]) -> None:
    """Sign in through the form, as a person would."""
    await page.goto(f"{console_url}/sign-in")
    await page.fill('input[name="email"]', who["email"])
    await page.fill('input[name="password"]', who["password"])
    await page.click('form[action="/sign-in"] button[type="submit"]')
    await page.wait_for_load_state("domcontentloaded")
    if "/sign-in" in page.url:
        raise AssertionError(f"sign-in failed for {who['email']}: {await page.inner_text('main')}")


async def fill_case_form(page: Page, case: dict[str, Any]) -> None:
    """Type a case document (the API's shape) into the new-case form."""
    worker, employment, claim, consent = (
        case["worker"],
        case["employment"],
        case["claims"][0],
        case["consent"],
    )
    text = {
        "external_ref": case["external_ref"],
        "worker.full_name": worker["full_name"],
        "worker.phone": worker["phone"],
        "worker.date_of_birth": worker.get("date_of_birth", ""),
        "worker.home_region": worker.get("home_region", ""),
        "employment.employer_name": employment.get("employer_name", ""),
        "employment.placement_agency": employment.get("placement_agency", ""),
        "employment.started_on": employment["started_on"],
        "employment.ended_on": employment.get("ended_on", ""),
        "claims[0].amount.value": claim["amount"]["value"],
        "claims[0].arose_on": claim.get("arose_on", ""),
        "claims[0].description": claim.get("description", ""),
        # The example's 09:30+07:00 is 09:30 in Jakarta.
        "consent.given_at": consent["given_at"][:16],
    }
    for name, value in text.items():
        await page.fill(f'[name="{name}"]', value)
    choices = {
        "worker.preferred_language": worker["preferred_language"],
        "worker.gender": worker.get("gender", ""),
        "worker.current_country": worker["current_country"],
        "employment.country": employment["country"],
        "employment.sector": employment["sector"],
        "claims[0].type": claim["type"],
        "claims[0].amount.currency": claim["amount"]["currency"],
        "consent.language": consent["language"],
        "consent.channel": consent["channel"],
        "consent.timezone": "Asia/Jakarta",
    }
    for name, value in choices.items():
        await page.select_option(f'[name="{name}"]', value)
    for country in consent.get("share_with_countries", []):
        await page.check(f'[name="consent.share_with_countries"][value="{country}"]')
    for box in await page.query_selector_all('[name="consent.purposes"]'):
        value = await box.get_attribute("value")
        if (value in consent["purposes"]) != await box.is_checked():
            await box.click()


async def wait_for_text(page: Page, selector: str, pattern: str, attempts: int = 60) -> str:
    """Reload until `selector`'s text matches (the pipeline works asynchronously)."""
    text = ""
    for _ in range(attempts):
        locator = page.locator(selector)
        text = await locator.inner_text() if await locator.count() else ""
        if re.search(pattern, text):
            return text
        await asyncio.sleep(1)
        await page.reload()
    raise AssertionError(f"{selector} never matched {pattern!r}; last text: {text!r}")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now. (Evaluated
    through the DevTools protocol: the console's CSP forbids inline scripts, rightly.)"""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@dataclass
class PageWeight:
    """What one page load fetched: bytes by URL (uncompressed bodies)."""

    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """HTML, CSS and JavaScript together."""
        return sum(self.sizes.values())


async def weigh(page: Page, url: str) -> PageWeight:
    """Load `url` in a fresh cache state and add up every response body."""
    weight = PageWeight()
    pending: list[Response] = []

    def seen(response: Response) -> None:
        pending.append(response)

    page.on("response", seen)
    await page.goto(url)
    await page.wait_for_load_state("load")
    page.remove_listener("response", seen)
    for response in pending:
        try:
            weight.sizes[response.url] = len(await response.body())
        except Exception:  # a redirect has no body
            weight.sizes[response.url] = 0
    return weight


async def screenshot(page: Page, name: str) -> None:
    """Full-page screenshots at desktop width and at 360 px, under .lintas/screenshots."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size or {"width": 1280, "height": 800}
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.screenshot(path=str(SCREENSHOTS / f"{name}-desktop.png"), full_page=True)
    await page.set_viewport_size({"width": 360, "height": 740})
    await page.screenshot(path=str(SCREENSHOTS / f"{name}-360.png"), full_page=True)
    await page.set_viewport_size(original)
