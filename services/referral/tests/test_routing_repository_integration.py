"""Routing storage and partner load on the real MongoDB-protocol server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Blocked, Offer, Partner
from lintas_referral.handlers import on_case_submitted
from lintas_shared.events import CaseSubmitted, ReferralOffered, parse_payload
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.integration
NOW = datetime(2026, 9, 16, tzinfo=UTC)


@pytest.fixture
async def stores(
    mongo: AsyncMongoClient[Document], database_name: str
) -> tuple[MongoRoutingRepository, MongoPartnerDirectory]:
    db = mongo[database_name]
    routings = MongoRoutingRepository(db["routings"])
    partners = MongoPartnerDirectory(db["partners"], routings)
    await partners.upsert(Partner("org-hk-1", "HK one", "HK"))
    await partners.upsert(Partner("org-hk-2", "HK two", "HK"))
    await partners.upsert(Partner("org-sg", "SG", "SG"))
    return routings, partners


async def test_a_case_is_routed_once_however_often_the_event_arrives(
    stores: tuple[MongoRoutingRepository, MongoPartnerDirectory],
    mongo: AsyncMongoClient[Document],
    database_name: str,
) -> None:
    routings, partners = stores
    event = case_submitted("case-r1")
    for _ in range(3):
        await on_case_submitted(event, routings, partners, lambda: NOW)

    [doc] = [d async for d in mongo[database_name]["routings"].find({})]
    assert doc["_id"] == "case-r1"
    assert doc["status"] == "offered"
    [entry] = doc[OUTBOX_FIELD]
    assert entry["event"]["type"] == ReferralOffered.TYPE
    assert "phone" not in doc["case"]["worker"]


async def test_load_spreads_offers_across_partners(
    stores: tuple[MongoRoutingRepository, MongoPartnerDirectory],
) -> None:
    routings, partners = stores
    for n in range(4):
        await on_case_submitted(case_submitted(f"case-{n}"), routings, partners, lambda: NOW)
    assert await routings.open_referrals("org-hk-1") == 2
    assert await routings.open_referrals("org-hk-2") == 2
    assert await routings.open_referrals("org-sg") == 0
    hk = await partners.in_country("HK")
    assert {p.id: p.open_referrals for p in hk} == {"org-hk-1": 2, "org-hk-2": 2}


async def test_blocked_routing_is_stored_with_its_reason(
    stores: tuple[MongoRoutingRepository, MongoPartnerDirectory],
) -> None:
    routings, _ = stores
    case = parse_payload(case_submitted("case-b"), CaseSubmitted)
    assert await routings.create(case, Blocked("awaiting_consent", "no consent"), None, NOW, [])
    assert not await routings.create(case, Offer(Partner("x", "x", "HK"), "HK"), "r", NOW, [])
    doc = await routings.get("case-b")
    assert doc is not None
    assert (doc["status"], doc["reason"], doc["referrals"]) == (
        "awaiting_consent",
        "no consent",
        [],
    )
