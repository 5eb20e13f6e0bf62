"""A lawyer replaces the organisation's webhook signing secret from the console, choosing
how long the old one keeps signing; the new secret is shown once, in Bahasa Indonesia by
default, and referral keeps the old one only for the chosen window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.mongo import make_mongo_client
from playwright.async_api import Page

from tests.e2e.conftest import Stack
from tests.support.console import sign_in
from tests.support.servers import Servers
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.e2e
SECRET = '[data-testid="webhook-secret"]'


async def test_a_lawyer_replaces_the_signing_secret_with_an_overlap(
    page: Page, stack: Stack, servers: Servers
) -> None:
    console = stack.urls["console"]
    with webhook_receiver() as receiver:
        await sign_in(page, console, stack.people["lawyer_hk"])
        await page.goto(f"{console}/webhook")
        await page.fill('input[name="url"]', receiver.url)
        await page.click('form[action="/webhook"] button[type="submit"]')
        first = await page.locator(SECRET).inner_text()
        assert first.startswith("whsec_")

        await page.select_option('select[name="overlap_hours"]', "72")
        await page.click('form[action="/webhook/rotate-secret"] button[type="submit"]')
        second = await page.locator(SECRET).inner_text()
        assert second.startswith("whsec_")
        assert second != first
        text = await page.inner_text("main")
        assert "ditandatangani dengan kunci rahasia lama dan yang baru" in text
        assert first not in text  # the old secret is never shown again

    client = make_mongo_client(servers.mongodb_uri, app_name="e2e-webhook-secret")
    try:
        partner = await client[stack.databases["referral"]]["partners"].find_one(
            {"_id": "org-demo-legal-hk"}
        )
    finally:
        await client.close()
    assert partner is not None
    hook = partner["webhook"]
    assert hook["secret"] != hook["previous_secret"]
    assert first not in str(hook)  # sealed at rest
    until = hook["previous_until"].replace(tzinfo=UTC)
    assert abs(until - (datetime.now(UTC) + timedelta(hours=72))) < timedelta(minutes=10)
