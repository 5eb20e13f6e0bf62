"""Referral's questions not asked by `_id`, answered from the routing and partner
documents themselves on the real server: what is due (the `next_due_at` index), which
case holds a referral (`referral_ids`), and each partner's load, counted on its own
document by an atomic claim, once per case across instances and redeliveries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from lintas_referral import handlers
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.domain.routing import Partner
from lintas_referral.handlers import Referrals
from lintas_referral.partner_load import LoadClaim
from lintas_shared.mongo import Document
from lintas_shared.unit_of_work import MongoVersionedDocuments
from pymongo import AsyncMongoClient

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import case, case_closed, submitted
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

HK = ["org-hk-1", "org-hk-2"]


async def loads(mongo: AsyncMongoClient[Document], database_name: str) -> dict[str, int]:
    partners = mongo[database_name]["partners"]
    found = {d["_id"]: d async for d in partners.find({"_id": {"$in": HK}})}
    claims = mongo[database_name]["partner_claims"]
    for doc in found.values():
        # The count is its open referrals, each a claim document of its own.
        assert doc["open"] == await claims.count_documents({"partner_id": doc["_id"]})
    return {p: found[p]["open"] for p in HK}


async def test_the_due_index_finds_a_case_until_nothing_is_due(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-due")), stores.ctx)
    routing = await stores.routings.get("case-due")
    assert routing is not None
    assert routing.next_due_at is not None
    assert await stores.routings.due(routing.next_due_at - timedelta(seconds=1)) == []
    assert await stores.routings.due(routing.next_due_at) == ["case-due"]
    indexes = await mongo[database_name]["routings"].index_information()
    assert {"next_due_at", "referral_ids", "open_partner_ids", "outbox_since"} <= set(indexes)

    await handlers.on_case_closed(case_closed("case-due"), stores.ctx)

    raw = await stores.routings.raw("case-due")
    assert raw is not None
    assert "next_due_at" not in raw
    assert await stores.routings.due(routing.next_due_at + timedelta(days=3650)) == []
    assert await loads(mongo, database_name) == {"org-hk-1": 0, "org-hk-2": 0}


async def test_a_referral_is_found_by_its_indexed_field(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-idx")), stores.ctx)
    routing = await stores.routings.get("case-idx")
    assert routing is not None
    referral_id = routing.referrals[0].id
    fresh = stores.make().routings  # nothing in its memory
    assert await fresh.case_of(referral_id) == "case-idx"
    found = await fresh.by_referral(referral_id)
    assert found is not None
    assert found.case_id == "case-idx"
    assert await fresh.by_referral("no-such-referral") is None


async def test_the_load_counts_each_open_case_once_across_instances_and_redelivery(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str, servers: Servers
) -> None:
    # Two instances (two clients, two contexts) route cases at once, and every event is
    # delivered twice: each partner's count must still be its open cases, once each.
    other_client = AsyncMongoClient[Document](servers.mongodb_uri, tz_aware=True)
    db = other_client[database_name]
    other_routings = MongoRoutingRepository(MongoVersionedDocuments(db["routings"]))
    other = Referrals(
        other_routings,
        MongoPartnerDirectory(db["partners"], other_routings),
        stores.ctx.rules,
        stores.ctx.policy,
        stores.clock,
    )
    events = [submitted(case(f"case-many-{n}")) for n in range(12)]
    try:
        await asyncio.gather(
            *(handlers.on_case_submitted(e, ctx) for e in events for ctx in (stores.ctx, other))
        )
        assert sum((await loads(mongo, database_name)).values()) == 12
        await asyncio.gather(
            *(
                handlers.on_case_closed(case_closed(f"case-many-{n}"), ctx)
                for n in range(6)
                for ctx in (stores.ctx, other)
            )
        )
    finally:
        await other_client.close()

    assert sum((await loads(mongo, database_name)).values()) == 6
    open_cases = {
        d["_id"]
        async for d in mongo[database_name]["routings"].find({"open_partner_ids": {"$in": HK}})
    }
    assert open_cases == {f"case-many-{n}" for n in range(6, 12)}


async def test_two_instances_never_offer_a_partner_more_than_its_capacity(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await stores.partners.upsert(Partner("org-hk-1", "HK one", "HK", capacity=2))
    await stores.partners.upsert(Partner("org-hk-2", "HK two", "HK", capacity=1))
    first, second = stores.make(), stores.make()
    # Both read the directory (empty) before either routes: their caches say room.
    await first.partners.in_countries(["HK"])
    await second.partners.in_countries(["HK"])
    events = [submitted(case(f"case-cap-{n}")) for n in range(5)]
    await asyncio.gather(
        *(
            handlers.on_case_submitted(e, ctx)
            for n, e in enumerate(events)
            for ctx in (first, second)
            if n % 2 == (ctx is second)
        )
    )
    assert await loads(mongo, database_name) == {"org-hk-1": 2, "org-hk-2": 1}
    statuses = []
    for n in range(5):
        routing = await stores.routings.get(f"case-cap-{n}")
        assert routing is not None
        statuses.append(routing.status)
    assert sorted(statuses) == ["referred"] * 3 + ["unassigned"] * 2


async def test_claim_and_release_count_a_referral_once(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    partners = stores.partners
    at = stores.clock()
    mine = LoadClaim("case-a", "ref-a", "run-1", at)
    assert await partners.claim("org-hk-1", mine, 1)
    assert await partners.claim("org-hk-1", mine, 1)  # again: counted already
    assert not await partners.claim("org-hk-1", LoadClaim("case-b", "ref-b", "run-2", at), 1)
    # A person's choice counts room or not; a second referral of the same case counts too.
    assert await partners.claim("org-hk-1", LoadClaim("case-a", "ref-a2", "run-3", at), None)
    assert await loads(mongo, database_name) == {"org-hk-1": 2, "org-hk-2": 0}
    # Another run deciding the same offer holds the claim too: either run's own release
    # leaves it counted for the other; a release of the referral itself (closed) does not.
    assert await partners.claim("org-hk-1", LoadClaim("case-a", "ref-a", "run-4", at), 1)
    await partners.release("org-hk-1", "ref-a", "run-1")
    assert await loads(mongo, database_name) == {"org-hk-1": 2, "org-hk-2": 0}
    assert await partners.claim("org-hk-1", LoadClaim("case-a", "ref-a", "run-1", at), 1)
    await partners.release("org-hk-1", "ref-a", "run-4")
    assert await loads(mongo, database_name) == {"org-hk-1": 2, "org-hk-2": 0}
    await partners.release("org-hk-1", "ref-a", "run-1")  # the last owner lets it go
    assert await loads(mongo, database_name) == {"org-hk-1": 1, "org-hk-2": 0}
    # The later of two runs gives up (its write failed) while the first one's write is
    # on its way: the referral stays counted for the first.
    assert await partners.claim("org-hk-1", LoadClaim("case-a", "ref-a", "run-5", at), 2)
    assert await partners.claim("org-hk-1", LoadClaim("case-a", "ref-a", "run-6", at), 2)
    await partners.release("org-hk-1", "ref-a", "run-6")
    assert await loads(mongo, database_name) == {"org-hk-1": 2, "org-hk-2": 0}
    await partners.release("org-hk-1", "ref-a")
    await partners.release("org-hk-1", "ref-a")
    assert await loads(mongo, database_name) == {"org-hk-1": 1, "org-hk-2": 0}
    assert not await partners.claim("org-gone", mine, None)


async def test_data_of_the_previous_version_is_read_and_its_load_counted_at_start_up(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-old-1")), stores.ctx)
    await handlers.on_case_submitted(submitted(case("case-old-2")), stores.ctx)
    db = mongo[database_name]
    # As the previous version stored them: no load on the partners, keys in `processed`,
    # `next_due_at` null when nothing was due, the version starting at 0.
    await db["partners"].update_many({}, {"$unset": {"open": "", "open_cases": ""}})
    raw = await stores.routings.raw("case-old-1")
    assert raw is not None
    await db["routings"].update_one(
        {"_id": "case-old-1"},
        {
            "$set": {"processed": raw["processed_events"], "version": 0},
            "$unset": {"processed_events": ""},
        },
    )
    await handlers.on_case_closed(case_closed("case-old-2"), stores.ctx)  # before migration
    await db["routings"].update_one({"_id": "case-old-2"}, {"$set": {"next_due_at": None}})

    directory = stores.make().partners
    assert isinstance(directory, MongoPartnerDirectory)
    assert await directory.migrate_load() == 4  # every partner stored without a load
    assert await directory.migrate_load() == 0  # idempotent
    assert await loads(mongo, database_name) == {"org-hk-1": 1, "org-hk-2": 0}

    # The old routing reads, a redelivered event it processed changes nothing, and a new
    # change writes on from its version.
    await handlers.on_case_submitted(submitted(case("case-old-1")), stores.ctx)
    routing = await stores.routings.get("case-old-1")
    assert routing is not None
    assert len(routing.processed) == 1
    await handlers.on_case_closed(case_closed("case-old-1"), stores.ctx)
    closed = await stores.routings.raw("case-old-1")
    assert closed is not None
    assert (closed["version"], closed["status"]) == (1, "closed")
    assert await loads(mongo, database_name) == {"org-hk-1": 0, "org-hk-2": 0}
    assert await stores.routings.due(stores.clock() + timedelta(days=3650)) == []
