"""A partner rotates its webhook secret with an overlap window: during it each delivery is
signed with the old and the new secret (a receiver on either verifies), after it only the
new one signs. Real store, real HTTP receiver (verifying with the `standardwebhooks`
package, or the deprecated header's rule), and the real app for the API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from lintas_referral import handlers, webhooks
from lintas_referral.adapters.webhook_deliveries import MongoWebhookDeliveries
from lintas_referral.bootstrap import create_app
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.webhooks import SignatureScheme, verify
from lintas_referral.settings import ReferralSettings
from lintas_referral.webhooks import Webhooks
from lintas_shared.outbox import OUTBOX_FIELD, entry_event
from lintas_shared.security import hash_api_key
from lintas_shared.settings import CommonSettings
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.referral.tests.conftest import FakeClock, Stores
from tests.support.referral_cases import case, submitted
from tests.support.servers import Servers
from tests.support.webhook_receiver import Receiver
from tests.support.webhook_resolver import FakeResolver

pytestmark = pytest.mark.integration
PARTNER = "org-hk-1"


async def _deliver_one(stores: Stores, hooks: Webhooks, case_id: str) -> None:
    await handlers.on_case_submitted(submitted(case(case_id)), stores.ctx)
    doc = await stores.routings.raw(case_id)
    assert doc is not None
    event = entry_event(doc[OUTBOX_FIELD][0])
    await webhooks.on_referral_event(event, hooks)
    assert await webhooks.deliver_due(hooks) == 1


def _verifies(secret: str, scheme: str, headers: dict[str, str], body: bytes, now: int) -> bool:
    if scheme == "lintas-v1":
        return verify(secret, headers["x-lintas-signature"], body, now)
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


@pytest.mark.parametrize("scheme", ["standard", "lintas-v1"])
async def test_both_secrets_sign_during_the_overlap_then_only_the_new_one(
    stores: Stores, hooks: Webhooks, receiver: Receiver, scheme: SignatureScheme
) -> None:
    receiver.scheme = "standard" if scheme == "standard" else "lintas-v1"
    old = await webhooks.register(hooks, PARTNER, receiver.url, scheme)
    rotated = await webhooks.rotate_secret(hooks, PARTNER, timedelta(hours=2))
    assert rotated is not None
    new = rotated.secret
    assert new != old
    assert rotated.previous_valid_until == stores.clock() + timedelta(hours=2)

    # During the overlap: a receiver still on the old secret accepts, and the very same
    # request verifies with the new one (a receiver already moved over accepts it too).
    receiver.secret = old
    await _deliver_one(stores, hooks, "case-r1")
    assert receiver.rejected == []
    [during] = receiver.requests
    now = int(hooks.wall_clock())
    assert _verifies(old, scheme, during.headers, during.body, now)
    assert _verifies(new, scheme, during.headers, during.body, now)

    # After the window: only the new secret signs (the same delivery, sent again).
    stores.clock.advance(hours=2)
    deliveries: MongoWebhookDeliveries = hooks.deliveries  # type: ignore[assignment]
    delivery_id = during.headers.get("webhook-id") or during.headers["x-lintas-delivery-id"]
    assert await deliveries.reschedule(delivery_id, stores.clock())
    assert await webhooks.deliver_due(hooks) == 1
    assert receiver.rejected == ["bad signature"]
    after = receiver.requests[-1]
    now = int(hooks.wall_clock())
    assert not _verifies(old, scheme, after.headers, after.body, now)
    assert _verifies(new, scheme, after.headers, after.body, now)
    if scheme == "standard":
        assert len(after.headers["webhook-signature"].split()) == 1


async def test_rotating_without_a_webhook_does_nothing(hooks: Webhooks) -> None:
    assert await webhooks.rotate_secret(hooks, PARTNER) is None
    with pytest.raises(ValueError, match="overlap"):
        await webhooks.rotate_secret(hooks, PARTNER, timedelta(days=8))


# --- the API -------------------------------------------------------------------------------

PEPPER = "test-pepper"
HEADERS = {"X-API-Key": "lk_hk_rotation"}
URL = "https://public.partner.example/hook"


@pytest.fixture
async def api(
    servers: Servers, database_name: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = ReferralSettings(
        common=CommonSettings(
            mongodb_uri=servers.mongodb_uri,
            kafka_bootstrap=servers.kafka_bootstrap,
            keyvault_database=database_name,
            api_key_pepper=SecretStr(PEPPER),
        ),
        database=database_name,
    )
    app = create_app(settings)  # no lifespan: the store is all these tests need
    app.state.referrals = dataclasses.replace(app.state.referrals, clock=FakeClock())
    app.state.webhooks = dataclasses.replace(
        app.state.webhooks,
        resolver=FakeResolver({"public.partner.example": ["93.184.216.34"]}),
    )
    await app.state.partners.upsert(
        Partner(PARTNER, PARTNER, "HK", open_referrals=0),
        api_key_hashes=[hash_api_key(HEADERS["X-API-Key"], PEPPER)],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        yield app, client


async def test_a_partner_rotates_its_secret_through_the_api(
    api: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = api
    none_yet = await client.post("/v1/webhook/rotate-secret", json={}, headers=HEADERS)
    assert none_yet.status_code == 404, none_yet.text
    registered = await client.put("/v1/webhook", json={"url": URL}, headers=HEADERS)
    assert registered.status_code == 200, registered.text

    too_long = await client.post(
        "/v1/webhook/rotate-secret", json={"overlap_hours": 169}, headers=HEADERS
    )
    assert too_long.status_code == 422
    assert [e["field"] for e in too_long.json()["errors"]] == ["overlap_hours"]

    rotated = await client.post(
        "/v1/webhook/rotate-secret", json={"overlap_hours": 6}, headers=HEADERS
    )
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != registered.json()["secret"]
    assert (body["url"], body["signature_scheme"]) == (URL, "standard")
    stored = await app.state.partners.webhook(PARTNER)
    hooks: Webhooks = app.state.webhooks
    assert hooks.box.open(PARTNER, stored.sealed_secret) == body["secret"]
    assert stored.previous_sealed_secret is not None
    assert hooks.box.open(PARTNER, stored.previous_sealed_secret) == registered.json()["secret"]
    assert stored.previous_until.isoformat().startswith(body["previous_secret_valid_until"][:16])

    unauthenticated = await client.post("/v1/webhook/rotate-secret", json={})
    assert unauthenticated.status_code == 401
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/webhook/rotate-secret"]
    assert set(operation["post"]["responses"]) >= {"200", "404", "422"}
