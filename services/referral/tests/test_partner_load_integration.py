"""A partner's load on the real store with two instances: a release after one write
never undoes another instance's claim, the reconciler puts right what a crashed instance
left (after the grace period, never undoing a claim made while it reads), and partners
stored before they counted their load are counted, a hand-on's claim included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

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
    doc = await mongo[database_name]["partners"].find_one({"_id": partner})
    assert doc is not None
    referrals = set(doc.get("open_referrals") or {})
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
        ctx = Referrals(
            routings,
            MongoPartnerDirectory(db["partners"], routings),
            stores.ctx.rules,
            stores.ctx.policy,
            stores.clock,
        )
        await handlers.on_case_submitted(submitted(case("case-cost")), ctx)
        submitting = list(listener.names)
        listener.names.clear()
        await handlers.on_case_closed(case_closed("case-cost"), ctx)
        closing = list(listener.names)
    finally:
        await client.close()
    # Submitted: the partners read (then cached for 5 s), one claim, one insert.
    assert submitting == ["find partners", "findAndModify partners", "insert routings"]
    # Closed: one read, one write, one release.
    assert closing == ["find routings", "update routings", "findAndModify partners"]
