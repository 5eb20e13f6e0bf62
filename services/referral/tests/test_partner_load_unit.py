"""A partner's load on the in-memory stores: claims keyed by referral and owned by the
run that made them (one write's release never undoes another's claim), and the
reconciler that puts right what a crashed instance left behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lintas_referral import handlers
from lintas_referral.adapters.routing_repository import InMemoryRoutingRepository
from lintas_referral.domain.case_routing import Policy
from lintas_referral.domain.handoff import load_default_manifests
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.rules import load_default_rules
from lintas_referral.handlers import Referrals
from lintas_referral.partner_load import LoadClaim, LoadReconciler, StoredLoad, reconciled

from services.referral.tests.conftest import FakeClock
from services.referral.tests.fakes import InMemoryPartnerDirectory
from tests.support.referral_cases import (
    case,
    case_closed,
    consent_recorded,
    consent_withdrawn,
    submitted,
)

pytestmark = pytest.mark.unit
POLICY = Policy(manifest=load_default_manifests()["legal_referral"])
RULES = load_default_rules()
HK1 = Partner("org-hk-1", "HK one", "HK")
GRACE = timedelta(minutes=5)


def make(
    *partners: Partner,
) -> tuple[Referrals, InMemoryRoutingRepository, InMemoryPartnerDirectory, FakeClock]:
    routings = InMemoryRoutingRepository()
    directory = InMemoryPartnerDirectory().add(*partners)
    clock = FakeClock()
    return Referrals(routings, directory, RULES, POLICY, clock), routings, directory, clock


def reconciler(
    routings: InMemoryRoutingRepository, directory: InMemoryPartnerDirectory, clock: FakeClock
) -> LoadReconciler:
    return LoadReconciler(directory, routings, clock, GRACE)


async def open_referral_ids(routings: InMemoryRoutingRepository, case_id: str) -> set[str]:
    routing = await routings.get(case_id)
    assert routing is not None
    return {r.id for r in routing.referrals if r.is_open}


async def test_a_release_after_a_write_never_undoes_the_next_writes_claim() -> None:
    # Review item 3: one instance withdraws the case's referral with org-hk-1 (its write
    # is stored, its release not yet made); meanwhile another instance offers the case
    # to org-hk-1 again. The first instance's release must not undo the second's claim.
    ctx, routings, directory, _ = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-3")), ctx)
    recorded = consent_recorded("case-3", "consent-new", ("HK",))

    async def the_other_instance(partner_id: str, referral_id: str) -> None:
        directory.before_release = None
        await handlers.on_consent_recorded(recorded, ctx)

    directory.before_release = the_other_instance
    await handlers.on_consent_withdrawn(consent_withdrawn("case-3", "consent-case-3"), ctx)

    routing = await routings.get("case-3")
    assert routing is not None
    assert [(r.partner_organisation_id, r.status) for r in routing.referrals] == [
        ("org-hk-1", "withdrawn"),
        ("org-hk-1", "offered"),
    ]
    assert set(directory.counted["org-hk-1"]) == {routing.referrals[1].id}


async def test_a_claim_left_by_a_crash_before_the_write_is_dropped_after_the_grace() -> None:
    # Review item 4, B: room was claimed, then the instance died before the write.
    ctx, routings, directory, clock = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-4b")), ctx)
    await directory.claim("org-hk-1", LoadClaim("case-4b", "ref-never-written", "dead", clock()), 5)
    assert directory.load("org-hk-1") == 2
    fixer = reconciler(routings, directory, clock)

    assert await fixer.run_once() == 0  # young: its write may still be on its way
    clock.advance(minutes=6)
    assert await fixer.run_once() == 1
    assert set(directory.counted["org-hk-1"]) == await open_referral_ids(routings, "case-4b")
    assert await fixer.run_once() == 0


async def test_a_release_lost_in_a_crash_after_the_write_is_put_right() -> None:
    # Review item 4, A: the write withdrew the referral, the instance died before its
    # release; the redelivered event finds its key stored and releases nothing.
    ctx, routings, directory, clock = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-4a")), ctx)
    closing = case_closed("case-4a")

    async def die(partner_id: str, referral_id: str) -> None:
        raise RuntimeError("the process died")

    directory.before_release = die
    with pytest.raises(RuntimeError):
        await handlers.on_case_closed(closing, ctx)
    directory.before_release = None
    await handlers.on_case_closed(closing, ctx)
    assert directory.load("org-hk-1") == 1  # leaked

    clock.advance(minutes=6)
    assert await reconciler(routings, directory, clock).run_once() == 1
    assert directory.load("org-hk-1") == 0


async def test_an_open_referral_not_counted_is_counted_again() -> None:
    ctx, routings, directory, clock = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-u")), ctx)
    directory.counted["org-hk-1"].clear()  # undercounted, as the defect of item 3 left it
    assert await reconciler(routings, directory, clock).run_once() == 1
    assert set(directory.counted["org-hk-1"]) == await open_referral_ids(routings, "case-u")


async def test_the_reconciler_never_undoes_a_claim_or_release_made_while_it_reads() -> None:
    ctx, routings, directory, clock = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-r")), ctx)
    await directory.claim("org-hk-1", LoadClaim("case-x", "ref-stale", "dead", clock()), 5)
    clock.advance(minutes=6)

    class Racing(InMemoryRoutingRepository):
        async def open_referrals_by_partner(self, partner_ids):  # type: ignore[no-untyped-def]
            found = await routings.open_referrals_by_partner(partner_ids)
            # Another instance claims room between the reconciler's two reads.
            await directory.claim("org-hk-1", LoadClaim("case-y", "ref-new", "live", clock()), 5)
            return found

    fixer = LoadReconciler(directory, Racing(routings.documents), clock, GRACE)
    assert await fixer.run_once() == 0  # the partner moved on: nothing replaced
    assert "ref-new" in directory.counted["org-hk-1"]
    assert await reconciler(routings, directory, clock).run_once() == 1
    assert set(directory.counted["org-hk-1"]) == {
        *await open_referral_ids(routings, "case-r"),
        "ref-new",  # young: kept
    }


def test_reconciled_keeps_what_is_held_or_young_and_adds_what_is_held() -> None:
    now = FakeClock()()
    old = LoadClaim("c1", "r-old", "run", now - timedelta(minutes=10))
    young = LoadClaim("c2", "r-young", "run", now - timedelta(minutes=1))
    held = LoadClaim("c3", "r-held", "run", now - timedelta(minutes=10))
    load = StoredLoad("p", 7, 3, {c.referral_id: c for c in (old, young, held)})
    wanted = reconciled(load, {"r-held": "c3", "r-missing": "c4"}, now, GRACE)
    assert wanted is not None
    assert set(wanted) == {"r-young", "r-held", "r-missing"}
    assert wanted["r-missing"].case_id == "c4"
    exact = StoredLoad("p", 7, 1, {"r-held": held})
    assert reconciled(exact, {"r-held": "c3"}, now, GRACE) is None
    # A count that does not match its entries, or the earlier way of counting, is redone.
    assert reconciled(StoredLoad("p", 7, None, {"r-held": held}), {"r-held": "c3"}, now, GRACE)
    legacy = StoredLoad("p", None, 1, {"r-held": held}, legacy=True)
    assert reconciled(legacy, {"r-held": "c3"}, now, GRACE) is not None
