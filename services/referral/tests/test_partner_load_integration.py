"""A partner's load on the real store with two instances: a release after one write
never undoes another instance's claim, the reconciler puts right what a crashed instance
left (after the grace period, never undoing a claim made while it reads), and partners
stored before they counted their load are counted, a hand-on's claim included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import bson
import pytest
from lintas_referral import handlers
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.handlers import Referrals
from lintas_referral.partner_load import LoadClaim, LoadReconciler
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient, monitoring

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import (
    case,
    case_closed,
    consent_recorded,
    consent_withdrawn,
    submitted,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
GRACE = timedelta(minutes=5)


class HookedDirectory(MongoPartnerDirectory):
    """An instance's partner directory that runs `before_release` first (a race)."""

    before_release: Callable[[], Awaitable[None]] | None = None

    async def release(self, partner_id: str, referral_id: str, owner: str | None = None) -> None:
        hook, self.before_release = self.before_release, None
        if hook is not None:
            await hook()
        await super().release(partner_id, referral_id, owner)


def instance(stores: Stores, mongo: AsyncMongoClient[Document], database_name: str) -> Referrals:
    made = stores.make()
    assert isinstance(made.routings, MongoRoutingRepository)
    directory = HookedDirectory(mongo[database_name]["partners"], made.routings)
    return Referrals(made.routings, directory, made.rules, made.policy, made.clock)


async def counted(mongo: AsyncMongoClient[Document], database_name: str, partner: str) -> set[str]:
    """The referrals counted on the partner (its claim documents), its count checked."""
    db = mongo[database_name]
    doc = await db["partners"].find_one({"_id": partner})
    assert doc is not None
    assert "open_referrals" not in doc  # no per-referral map in the partner's document
    referrals = {c["_id"] async for c in db["partner_claims"].find({"partner_id": partner})}
    assert doc.get("open") == len(referrals)
    return referrals


async def open_ids(stores: Stores, case_id: str) -> set[str]:
    routing = await stores.routings.get(case_id)
    assert routing is not None
    return {r.id for r in routing.referrals if r.is_open}


def reconciler(stores: Stores) -> LoadReconciler:
    made = stores.make()  # a third instance
    assert isinstance(made.partners, MongoPartnerDirectory)
    assert isinstance(made.routings, MongoRoutingRepository)
    return LoadReconciler(made.partners, made.routings, stores.clock, GRACE)


async def test_a_release_after_one_instances_write_never_undoes_the_others_claim(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await mongo[database_name]["partners"].delete_one({"_id": "org-hk-2"})  # one HK partner
    first = instance(stores, mongo, database_name)
    second = instance(stores, mongo, database_name)
    await handlers.on_case_submitted(submitted(case("case-3")), first)

    async def second_offers_again() -> None:
        # Between the first instance's write (the referral withdrawn) and its release.
        await handlers.on_consent_recorded(consent_recorded("case-3", "consent-new"), second)

    assert isinstance(first.partners, HookedDirectory)
    first.partners.before_release = second_offers_again
    await handlers.on_consent_withdrawn(consent_withdrawn("case-3", "consent-case-3"), first)

    routing = await stores.routings.get("case-3")
    assert routing is not None
    assert [(r.partner_organisation_id, r.status) for r in routing.referrals] == [
        ("org-hk-1", "withdrawn"),
        ("org-hk-1", "offered"),
    ]
    assert await counted(mongo, database_name, "org-hk-1") == await open_ids(stores, "case-3")


async def test_what_a_crashed_instance_left_is_put_right_after_the_grace(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    first = instance(stores, mongo, database_name)
    await handlers.on_case_submitted(submitted(case("case-a")), first)
    await handlers.on_case_submitted(submitted(case("case-b")), first)
    # B: room claimed, then the instance died before its write.
    dead = LoadClaim("case-b", "ref-never-written", "dead-run", stores.clock())
    assert await first.partners.claim("org-hk-2", dead, None)

    # A: the write closed case-a, the instance died before its release; the redelivery
    # finds the event processed and releases nothing.
    async def die() -> None:
        raise RuntimeError("the process died")

    assert isinstance(first.partners, HookedDirectory)
    first.partners.before_release = die
    with pytest.raises(RuntimeError):
        await handlers.on_case_closed(case_closed("case-a"), first)
    await handlers.on_case_closed(case_closed("case-a"), instance(stores, mongo, database_name))
    closed = await stores.routings.get("case-a")
    assert closed is not None
    assert [r.status for r in closed.referrals] == ["withdrawn"]
    leaked = (await counted(mongo, database_name, "org-hk-1")) | (
        await counted(mongo, database_name, "org-hk-2")
    )
    assert leaked == {
        closed.referrals[0].id,
        *await open_ids(stores, "case-b"),
        "ref-never-written",
    }

    fixer = reconciler(stores)
    await fixer.run_once()
    # The claim of the write that never came is young: it is kept for now.
    assert "ref-never-written" in await counted(mongo, database_name, "org-hk-2")
    stores.clock.advance(minutes=6)
    await fixer.run_once()
    assert (await counted(mongo, database_name, "org-hk-1")) | (
        await counted(mongo, database_name, "org-hk-2")
    ) == await open_ids(stores, "case-b")
    assert await fixer.run_once() == 0


async def test_the_reconciler_never_undoes_a_claim_made_while_it_reads_the_routings(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-r")), stores.ctx)
    other = stores.make().partners
    dead = LoadClaim("case-dead", "ref-dead", "dead-run", stores.clock())
    assert await other.claim("org-hk-2", dead, None)  # to be dropped: org-hk-2 is rewritten
    stores.clock.advance(minutes=6)

    class Racing(MongoRoutingRepository):
        async def open_referrals_by_partner(
            self, partner_ids: Iterable[str]
        ) -> dict[str, dict[str, str]]:
            found = await super().open_referrals_by_partner(partner_ids)
            # Another instance claims room for a write still on its way.
            claim = LoadClaim("case-new", "ref-new", "live-run", stores.clock())
            assert await other.claim("org-hk-2", claim, 5)
            return found

    fixer = LoadReconciler(
        stores.make().partners, Racing(mongo[database_name]["routings"]), stores.clock, GRACE
    )
    assert await fixer.run_once() == 0  # org-hk-2 moved on meanwhile: left for next time
    assert await counted(mongo, database_name, "org-hk-2") == {"ref-dead", "ref-new"}
    assert await reconciler(stores).run_once() == 1
    assert await counted(mongo, database_name, "org-hk-2") == {"ref-new"}


async def test_a_hand_on_claim_on_a_partner_not_yet_counted_is_counted_at_start_up(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # The lesser remark: a partner stored before it counted its load gets a claim from a
    # hand-on (no capacity) before the start-up count; the count must still be right.
    await handlers.on_case_submitted(submitted(case("case-l1")), stores.ctx)
    partners = mongo[database_name]["partners"]
    unset = {"open": "", "open_cases": "", "open_referrals": "", "load_seq": ""}
    await partners.update_many({}, {"$unset": unset})
    handed = LoadClaim("case-l2", "ref-handed-on", "run", stores.clock())
    assert await stores.make().partners.claim("org-hk-1", handed, None)

    directory = stores.make().partners
    assert isinstance(directory, MongoPartnerDirectory)
    await directory.migrate_load(stores.clock)

    assert await counted(mongo, database_name, "org-hk-1") == {
        *await open_ids(stores, "case-l1"),
        "ref-handed-on",  # young, its write may be on its way
    }
    for other in ("org-hk-2", "org-sg", "org-id-1"):
        assert await counted(mongo, database_name, other) == set()


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in {"endSessions", "hello", "isMaster", "ping"}:
            self.names.append(f"{event.command_name} {event.command.get(event.command_name)}")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_happy_path_costs_no_more_store_commands_than_before(
    stores: Stores, database_name: str, servers: Servers
) -> None:
    listener = Commands()
    client = AsyncMongoClient[Document](
        servers.mongodb_uri, tz_aware=True, event_listeners=[listener]
    )
    try:
        db = client[database_name]
        routings = MongoRoutingRepository(db["routings"])
        directory = MongoPartnerDirectory(db["partners"], routings)
        ctx = Referrals(routings, directory, stores.ctx.rules, stores.ctx.policy, stores.clock)
        await handlers.on_case_submitted(submitted(case("case-cost")), ctx)
        submitting = list(listener.names)
        (referral_id,) = await open_ids(stores, "case-cost")
        (partner_id,) = {
            c["partner_id"] async for c in db["partner_claims"].find({"case_id": "case-cost"})
        }
        listener.names.clear()
        # Whether the offer's event goes to a webhook: the answer its claim read.
        assert not await directory.has_webhook(partner_id, referral_id)
        assert listener.names == []
        await handlers.on_case_closed(case_closed("case-cost"), ctx)
        closing = list(listener.names)
    finally:
        await client.close()
    # Submitted: the partners read (then cached for 5 s), one claim (its document, then
    # the count, which returns the partner's webhook only), one insert.
    assert submitting == [
        "find partners",
        "insert partner_claims",
        "findAndModify partners",
        "insert routings",
    ]
    # Closed: one read, one write, one release (its document, then the count).
    assert closing == [
        "find routings",
        "update routings",
        "delete partner_claims",
        "update partners",
    ]


class Replies(monitoring.CommandListener):
    """The size of each command sent and of each reply."""

    def __init__(self) -> None:
        self.sizes: list[tuple[str, int, int]] = []
        self._sent: dict[int, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._sent[event.request_id] = len(bson.encode(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        sent = self._sent.pop(event.request_id, 0)
        if event.command_name in {"insert", "update", "delete", "findAndModify"}:
            self.sizes.append((event.command_name, sent, len(bson.encode(event.reply))))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._sent.pop(event.request_id, None)


async def test_a_claim_costs_the_same_whatever_the_number_of_open_referrals(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str, servers: Servers
) -> None:
    partners = mongo[database_name]["partners"]
    listener = Replies()
    client = AsyncMongoClient[Document](
        servers.mongodb_uri, tz_aware=True, event_listeners=[listener]
    )
    sizes: list[int] = []
    try:
        directory = MongoPartnerDirectory(client[database_name]["partners"])
        costs = []
        for n in range(500):
            listener.sizes.clear()
            claim = LoadClaim(f"case-{n:04d}", f"ref-{n:04d}", "run", stores.clock())
            assert await directory.claim("org-hk-1", claim, None)
            costs.append(list(listener.sizes))
            if n in (0, 499):
                doc = await partners.find_one({"_id": "org-hk-1"})
                assert doc is not None
                sizes.append(len(bson.encode(doc)))
    finally:
        await client.close()
    # The same commands, sent and answered with the same number of bytes, for the second
    # claim as for the 500th (the first answer is the partner as it was before its first
    # count: shorter), and a partner's document of the same size: nothing grows with the
    # open referrals.
    assert [name for name, _, _ in costs[0]] == ["insert", "findAndModify"]
    assert costs[-1] == costs[1]
    assert sizes[0] == sizes[1]
    assert len(await counted(mongo, database_name, "org-hk-1")) == 500


async def test_claims_kept_in_the_partners_document_by_the_previous_version_are_moved(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await handlers.on_case_submitted(submitted(case("case-m")), stores.ctx)
    db = mongo[database_name]
    held = await open_ids(stores, "case-m")
    (rid,) = held
    # As the previous version stored it: the claims in the partner's document.
    claim = await db["partner_claims"].find_one({"_id": rid})
    assert claim is not None
    young = stores.clock()
    await db["partner_claims"].delete_many({})
    await db["partners"].update_one(
        {"_id": claim["partner_id"]},
        {
            "$set": {
                "open_referrals": {
                    rid: {"case_id": "case-m", "owners": claim["owners"], "at": claim["at"]},
                    "ref-young": {"case_id": "case-y", "owners": ["run-y"], "at": young},
                },
                "open": 2,
            },
        },
    )
    directory = stores.make().partners
    assert isinstance(directory, MongoPartnerDirectory)
    assert await directory.migrate_claims() == 1
    assert await directory.migrate_claims() == 0  # idempotent
    assert await directory.migrate_load(stores.clock) == 0  # nothing left to correct
    assert await counted(mongo, database_name, claim["partner_id"]) == {rid, "ref-young"}
    moved = await db["partner_claims"].find_one({"_id": "ref-young"})
    assert moved is not None
    assert (moved["partner_id"], moved["case_id"], moved["owners"]) == (
        claim["partner_id"],
        "case-y",
        ["run-y"],
    )


async def test_claims_count_once_below_the_capacity_and_each_owner_lets_go_of_its_own(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    directory = stores.make().partners
    claims = mongo[database_name]["partner_claims"]
    now = stores.clock()
    assert await directory.claim("org-sg", LoadClaim("case-1", "ref-1", "run-a", now), 1)
    # Full: refused, and no claim document is left behind.
    assert not await directory.claim("org-sg", LoadClaim("case-2", "ref-2", "run-a", now), 1)
    assert await claims.find_one({"_id": "ref-2"}) is None
    # A hand-on is counted whatever the capacity.
    assert await directory.claim("org-sg", LoadClaim("case-2", "ref-2", "run-h", now), None)
    assert await counted(mongo, database_name, "org-sg") == {"ref-1", "ref-2"}
    # Claimed again (a redelivery, another run): counted once, held by both runs.
    assert await directory.claim("org-sg", LoadClaim("case-1", "ref-1", "run-b", now), 1)
    held = await claims.find_one({"_id": "ref-1"})
    assert held is not None
    assert sorted(held["owners"]) == ["run-a", "run-b"]
    assert await counted(mongo, database_name, "org-sg") == {"ref-1", "ref-2"}
    # One run's release leaves the other's claim counted; a second release changes nothing.
    await directory.release("org-sg", "ref-1", "run-a")
    await directory.release("org-sg", "ref-1", "run-a")
    assert await counted(mongo, database_name, "org-sg") == {"ref-1", "ref-2"}
    await directory.release("org-sg", "ref-1", "run-b")
    assert await counted(mongo, database_name, "org-sg") == {"ref-2"}
    # Released for good (closed) once, whoever holds it.
    await directory.release("org-sg", "ref-2")
    await directory.release("org-sg", "ref-2")
    assert await counted(mongo, database_name, "org-sg") == set()
    # Another partner's claim of the same referral id is not this one's.
    assert await directory.claim("org-hk-1", LoadClaim("case-3", "ref-3", "run-c", now), 5)
    assert not await directory.claim("org-sg", LoadClaim("case-3", "ref-3", "run-d", now), 5)
    await directory.release("org-sg", "ref-3")
    assert await counted(mongo, database_name, "org-hk-1") == {"ref-3"}
