"""The partner behind an API key or a lawyer's token, on the real store: an instance
remembers it a few seconds (`callers_ttl`); the operator's upsert through the instance
takes effect there at once."""

from __future__ import annotations

import pytest
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.domain.routing import Partner
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.clocks import SteppedClock

pytestmark = pytest.mark.integration
REMEMBERED = 5.0


PARTNER = Partner(
    id="org-lbh", name="LBH", country="ID", claim_types=frozenset({"wages"}), capacity=5
)


async def test_a_key_dropped_by_the_tool_is_refused_once_the_instance_forgets_it(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    clock = SteppedClock()
    collection = mongo[database_name]["partners"]
    service = MongoPartnerDirectory(collection, callers_ttl=REMEMBERED, clock=clock)
    tool = MongoPartnerDirectory(collection)
    await tool.upsert(PARTNER, api_key_hashes=["hash-1"])
    assert await service.by_api_key_hash("hash-1") == await tool.by_api_key_hash("hash-1")
    assert await service.calling("org-lbh") is not None
    await tool.upsert(PARTNER, api_key_hashes=[])  # the key revoked
    await collection.update_one({"_id": "org-lbh"}, {"$set": {"active": False}})
    assert await tool.by_api_key_hash("hash-1") is None
    assert await service.by_api_key_hash("hash-1") is not None  # remembered, no read
    assert await service.calling("org-lbh") is not None
    clock.now += REMEMBERED
    assert await service.by_api_key_hash("hash-1") is None
    assert await service.calling("org-lbh") is None


async def test_an_upsert_through_the_instance_takes_effect_there_at_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    service = MongoPartnerDirectory(
        mongo[database_name]["partners"], callers_ttl=REMEMBERED, clock=SteppedClock()
    )
    await service.upsert(PARTNER, api_key_hashes=["hash-1"])
    assert await service.by_api_key_hash("hash-1") is not None
    await service.upsert(PARTNER, api_key_hashes=["hash-2"])
    assert await service.by_api_key_hash("hash-1") is None
    assert await service.by_api_key_hash("hash-2") is not None
