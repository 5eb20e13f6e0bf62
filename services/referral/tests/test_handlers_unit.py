"""Referral's use cases on the in-memory store: one unit of work per change, and the
partners' load claimed and released exactly once around the routing's write."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from lintas_referral import handlers
from lintas_referral.adapters.routing_repository import InMemoryRoutingRepository
from lintas_referral.domain.case_routing import Policy, TransitionError
from lintas_referral.domain.handoff import load_default_manifests
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.rules import load_default_rules
from lintas_referral.handlers import Referrals
from lintas_shared.events import ReferralOffered
from lintas_shared.outbox import OUTBOX_FIELD, entry_event
from lintas_shared.unit_of_work import PROCESSED_FIELD

from services.referral.tests.conftest import FakeClock
from services.referral.tests.fakes import InMemoryPartnerDirectory
from tests.support.referral_cases import (
    case,
    case_closed,
    consent_recorded,
    submitted,
)

pytestmark = pytest.mark.unit
POLICY = Policy(manifest=load_default_manifests()["legal_referral"])
RULES = load_default_rules()


def make(*partners: Partner) -> tuple[Referrals, InMemoryRoutingRepository, FakeClock]:
    routings = InMemoryRoutingRepository()
    directory = InMemoryPartnerDirectory().add(*partners)
    clock = FakeClock()
    return Referrals(routings, directory, RULES, POLICY, clock), routings, clock


def directory(ctx: Referrals) -> InMemoryPartnerDirectory:
    assert isinstance(ctx.partners, InMemoryPartnerDirectory)
    return ctx.partners


HK1 = Partner("org-hk-1", "HK one", "HK")
HK2 = Partner("org-hk-2", "HK two", "HK")


async def test_a_redelivered_submission_routes_and_counts_once() -> None:
    ctx, routings, _ = make(HK1, HK2)
    event = submitted(case("case-1"))
    for _ in range(3):
        await handlers.on_case_submitted(event, ctx)
    doc = await routings.raw("case-1")
    assert doc is not None
    assert [entry_event(e).type for e in doc[OUTBOX_FIELD]] == [ReferralOffered.TYPE]
    assert doc[PROCESSED_FIELD] == [event.dedupe_key]
    assert doc["version"] == 1
    # A redelivery may choose another partner (the first is now busier): what it claims
    # for the offer it could not store is released again.
    assert directory(ctx).open_cases == {"org-hk-1": {"case-1"}, "org-hk-2": set()}
    assert await routings.due(doc["next_due_at"]) == ["case-1"]


async def test_a_decline_moves_the_load_to_the_next_partner() -> None:
    ctx, routings, _ = make(HK1, HK2)
    await handlers.on_case_submitted(submitted(case("case-d")), ctx)
    routing = await routings.get("case-d")
    assert routing is not None
    first = routing.referrals[0].id
    assert await routings.case_of(first) == "case-d"

    routing = await handlers.decline(ctx, first, "org-hk-1", "conflict")

    assert routing.referrals[1].partner_organisation_id == "org-hk-2"
    assert (directory(ctx).load("org-hk-1"), directory(ctx).load("org-hk-2")) == (0, 1)
    # The answer is the stored state, at its stored version.
    assert routing.version == (await routings.raw("case-d") or {})["version"] == 2


async def test_a_partner_full_on_the_store_is_passed_over_though_its_cache_said_room() -> None:
    ctx, routings, _ = make(Partner("org-hk-1", "one", "HK", capacity=1), HK2)
    directory(ctx).take("org-hk-1", "elsewhere")  # filled by another instance
    directory(ctx).stale["org-hk-1"] = 0  # which this instance has not seen yet
    await handlers.on_case_submitted(submitted(case("case-f")), ctx)
    routing = await routings.get("case-f")
    assert routing is not None
    assert [r.partner_organisation_id for r in routing.referrals] == ["org-hk-2"]
    assert directory(ctx).open_cases == {"org-hk-1": {"elsewhere"}, "org-hk-2": {"case-f"}}


async def test_no_partner_with_room_leaves_the_case_unassigned_and_counts_nothing() -> None:
    ctx, routings, _ = make(Partner("org-hk-1", "one", "HK", capacity=0))
    await handlers.on_case_submitted(submitted(case("case-u")), ctx)
    routing = await routings.get("case-u")
    assert routing is not None
    assert (routing.status, routing.referrals) == ("unassigned", [])
    assert directory(ctx).claims == 0


async def test_a_claim_for_a_write_that_is_then_refused_is_released() -> None:
    ctx, routings, _ = make(HK1, HK2)
    await handlers.on_case_submitted(submitted(case("case-r")), ctx)
    routing = await routings.get("case-r")
    assert routing is not None
    first = routing.referrals[0].id
    closing = case_closed("case-r")

    # Another instance: its own unit of work on the same documents and partners.
    other = replace(ctx, routings=InMemoryRoutingRepository(routings.documents))

    async def close_first(partner_id: str, case_id: str) -> None:
        # The other instance closes the case between this claim and the decline's write.
        directory(ctx).before_claim = None
        await handlers.on_case_closed(closing, other)

    directory(ctx).before_claim = close_first
    with pytest.raises(TransitionError):
        await handlers.decline(ctx, first, "org-hk-1", "conflict")

    assert directory(ctx).open_cases == {"org-hk-1": set(), "org-hk-2": set()}
    stored = await routings.get("case-r")
    assert stored is not None
    assert [r.status for r in stored.referrals] == ["withdrawn"]


async def test_expiry_by_the_due_index_reroutes_and_moves_the_load() -> None:
    ctx, routings, clock = make(HK1, HK2)
    await handlers.on_case_submitted(submitted(case("case-e")), ctx)
    clock.advance(hours=71)
    assert await handlers.run_due(ctx) == 0
    clock.advance(hours=1)
    assert await handlers.run_due(ctx) == 1
    routing = await routings.get("case-e")
    assert routing is not None
    assert [(r.partner_organisation_id, r.status) for r in routing.referrals] == [
        ("org-hk-1", "expired"),
        ("org-hk-2", "offered"),
    ]
    assert (directory(ctx).load("org-hk-1"), directory(ctx).load("org-hk-2")) == (0, 1)
    clock.advance(hours=72)
    assert await handlers.run_due(ctx) == 1
    assert directory(ctx).open_cases == {"org-hk-1": set(), "org-hk-2": set()}


async def test_a_handed_on_partner_is_counted_even_when_full() -> None:
    full_sg = Partner("org-sg", "SG", "SG", capacity=0)
    ctx, routings, _ = make(HK1, full_sg)
    await handlers.on_case_submitted(submitted(case("case-h", share_with=("HK", "SG"))), ctx)
    routing = await routings.get("case-h")
    assert routing is not None
    rid = routing.referrals[0].id
    await handlers.hand_on(ctx, rid, "org-hk-1", "org-sg", [0], "moved")
    assert directory(ctx).open_cases == {"org-hk-1": {"case-h"}, "org-sg": {"case-h"}}


async def test_an_event_processed_before_the_unit_of_work_changes_nothing() -> None:
    ctx, routings, _ = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-old", share_with=("SG",))), ctx)
    recorded = consent_recorded("case-old", "consent-2", ("HK",))
    # As the previous version stored it: the key in `processed`, none in `processed_events`.
    doc = routings.documents.docs["case-old"]
    doc["processed"] = [recorded.dedupe_key]
    before = (await routings.get("case-old") or None, directory(ctx).claims)

    await handlers.on_consent_recorded(recorded, ctx)

    after = await routings.get("case-old")
    assert after is not None
    assert before[0] is not None
    assert (after.referrals, directory(ctx).claims) == (before[0].referrals, before[1])
    assert after.has_processed(recorded.dedupe_key)


async def test_concurrent_commands_in_one_process_all_apply() -> None:
    import asyncio

    from lintas_referral.domain.case_routing import Progress

    ctx, routings, clock = make(HK1)
    await handlers.on_case_submitted(submitted(case("case-c")), ctx)
    routing = await routings.get("case-c")
    assert routing is not None
    rid = routing.referrals[0].id
    await handlers.accept(ctx, rid, "org-hk-1")
    await asyncio.gather(
        *(handlers.progress(ctx, rid, "org-hk-1", Progress(at=clock())) for _ in range(4))
    )
    stored = await routings.get("case-c")
    assert stored is not None
    assert [h.status for h in stored.referrals[0].history].count("in_progress") == 4
    assert stored.version == 6
    clock.advance(days=1)
    assert timedelta(0) < clock() - routing.created_at
