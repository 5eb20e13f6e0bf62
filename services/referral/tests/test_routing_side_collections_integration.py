"""The side collections that keep referral's hot questions off whole-collection scans.

FerretDB v1 reads every document for any query but `_id` equality, so the scheduler's
"what is due?", the partner API's "which case holds this referral?" and the routing
decision's "how loaded is this partner?" are answered from small collections kept
beside the routings. These tests check, on the real server, that those answers stay
right when the side collections are stale, missing or ahead of the routing documents.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from lintas_referral import handlers
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.handlers import Referrals
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from pymongo import AsyncMongoClient

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import case, case_closed, submitted
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

HK = ["org-hk-1", "org-hk-2"]


async def test_repair_rebuilds_timers_and_partner_load_from_the_routings(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    for n in range(3):
        await handlers.on_case_submitted(submitted(case(f"case-rep-{n}")), stores.ctx)
    db = mongo[database_name]
    # As after a crash between the routing writes and theirs, or data from before them.
    await db["routings_timers"].drop()
    await db["routings_partner_load"].drop()
    await db["routings_partner_load"].insert_one({"_id": "org-hk-1|gone", "partner_id": "org-hk-1"})
    await db["routings_partner_counts"].drop()
    await db["routings_partner_counts"].insert_one({"_id": "org-hk-1", "open": 1})
    far = stores.clock() + timedelta(days=30)
    assert await stores.routings.due(far) == []
    assert await stores.routings.open_referrals(HK) == {"org-hk-1": 1, "org-hk-2": 0}

    await stores.routings.repair()

    assert await stores.routings.open_referrals(HK) == {"org-hk-1": 2, "org-hk-2": 1}
    assert sorted(await stores.routings.due(far)) == ["case-rep-0", "case-rep-1", "case-rep-2"]


async def test_a_stale_timer_changes_nothing_and_moves_to_the_routing_due_time(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-stale")), stores.ctx)
    routing = await stores.routings.get("case-stale")
    assert routing is not None
    assert routing.next_due_at is not None
    timers = mongo[database_name]["routings_timers"]
    await timers.update_one({"_id": "case-stale"}, {"$set": {"due_at": stores.clock()}})
    before = await stores.routings.raw("case-stale")
    assert before is not None

    assert await stores.routings.due(stores.clock()) == ["case-stale"]
    await handlers.run_due(stores.ctx)

    after = await stores.routings.raw("case-stale")
    assert after is not None
    assert len(after[OUTBOX_FIELD]) == len(before[OUTBOX_FIELD])  # no event from the tick
    assert [r["status"] for r in after["referrals"]] == ["offered"]
    timer = await timers.find_one({"_id": "case-stale"})
    assert timer is not None
    assert timer["due_at"] == routing.next_due_at
    assert await stores.routings.due(stores.clock()) == []


async def test_a_closed_case_leaves_no_timer_and_no_load(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-closing")), stores.ctx)
    timers = mongo[database_name]["routings_timers"]
    assert await timers.find_one({"_id": "case-closing"}) is not None
    assert await stores.routings.open_referrals(HK) == {"org-hk-1": 1, "org-hk-2": 0}

    await handlers.on_case_closed(case_closed("case-closing"), stores.ctx)

    assert await timers.find_one({"_id": "case-closing"}) is None
    assert await stores.routings.open_referrals(HK) == {"org-hk-1": 0, "org-hk-2": 0}


async def test_a_referral_is_found_without_its_index_and_indexed_again(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-idx")), stores.ctx)
    routing = await stores.routings.get("case-idx")
    assert routing is not None
    referral_id = routing.referrals[0].id
    index = mongo[database_name]["routings_referrals"]
    assert await index.find_one({"_id": referral_id}) == {"_id": referral_id, "case_id": "case-idx"}
    await index.drop()

    found = await stores.routings.by_referral(referral_id)

    assert found is not None
    assert found.case_id == "case-idx"
    assert await index.find_one({"_id": referral_id}) == {"_id": referral_id, "case_id": "case-idx"}
    assert await stores.routings.by_referral("no-such-referral") is None


async def test_the_load_counts_each_open_case_once_across_instances_and_redelivery(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str, servers: Servers
) -> None:
    # Two instances (two clients, two contexts) route cases at once, and every event is
    # delivered twice: each partner's count must still be its open cases, once each.
    other_client = AsyncMongoClient[Document](servers.mongodb_uri, tz_aware=True)
    db = other_client[database_name]
    other = Referrals(
        MongoRoutingRepository(db["routings"]),
        MongoPartnerDirectory(db["partners"], MongoRoutingRepository(db["routings"])),
        stores.ctx.rules,
        stores.ctx.policy,
        stores.clock,
    )
    events = [submitted(case(f"case-many-{n}")) for n in range(12)]
    try:
        await asyncio.gather(
            *(handlers.on_case_submitted(e, ctx) for e in events for ctx in (stores.ctx, other))
        )
        counts = await stores.routings.open_referrals(HK)
        rows = await mongo[database_name]["routings_partner_load"].count_documents({})
        assert sum(counts.values()) == rows == 12
        await asyncio.gather(
            *(
                handlers.on_case_closed(case_closed(f"case-many-{n}"), ctx)
                for n in range(6)
                for ctx in (stores.ctx, other)
            )
        )
    finally:
        await other_client.close()

    assert sum((await stores.routings.open_referrals(HK)).values()) == 6
