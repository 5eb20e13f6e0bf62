"""Routing, consent, lifecycle and schedules on the real MongoDB-protocol server.

Each write is checked where it lands: the routing document, its processed event ids and
its outbox (the events published from it), so redelivery and concurrency are real.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from lintas_referral import handlers
from lintas_referral.domain.case_routing import Progress, ReferralNotFoundError
from lintas_shared.crypto import CaseKeyMissingError, KeyVault, MasterKeys
from lintas_shared.events import (
    PARTNER_NOTE_FIELD,
    CaseRoutingBlocked,
    DeadlineApproaching,
    ReferralDeclined,
    ReferralOffered,
    ReferralWithdrawn,
)
from lintas_shared.key_cache import KeyCache
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, entry_event
from lintas_shared.settings import CommonSettings
from lintas_shared.unit_of_work import Write
from lintas_shared.values import ClaimType
from pymongo import AsyncMongoClient

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import (
    case,
    case_closed,
    claim,
    consent_recorded,
    consent_withdrawn,
    submitted,
)

pytestmark = pytest.mark.integration


async def outbox_types(stores: Stores, case_id: str) -> list[str]:
    doc = await stores.routings.raw(case_id)
    assert doc is not None
    return [entry_event(entry).type for entry in doc[OUTBOX_FIELD]]


async def test_a_case_is_routed_once_however_often_the_event_arrives(stores: Stores) -> None:
    event = submitted(case("case-r1"))
    for _ in range(3):
        await handlers.on_case_submitted(event, stores.ctx)
    assert await outbox_types(stores, "case-r1") == [ReferralOffered.TYPE]
    routing = await stores.routings.get("case-r1")
    assert routing is not None
    assert routing.processed == [event.dedupe_key]
    assert routing.claims[0].forum is not None
    assert routing.claims[0].forum.code == "HK-MECAB"


async def test_load_spreads_offers_across_partners(stores: Stores) -> None:
    for n in range(4):
        await handlers.on_case_submitted(submitted(case(f"case-{n}")), stores.ctx)
    hk = await stores.make().partners.in_country("HK")  # a fresh directory: no cache
    assert {p.id: p.open_referrals for p in hk} == {"org-hk-1": 2, "org-hk-2": 2}


async def test_consent_gate_blocks_resumes_and_withdraws(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-c", share_with=("SG",))), stores.ctx)
    routing = await stores.routings.get("case-c")
    assert routing is not None
    assert routing.status == "awaiting_consent"
    assert routing.reason is not None
    assert "HK" in routing.reason

    recorded = consent_recorded("case-c", "consent-2", ("HK",))
    await handlers.on_consent_recorded(recorded, stores.ctx)
    await handlers.on_consent_recorded(recorded, stores.ctx)  # redelivered: no second offer
    routing = await stores.routings.get("case-c")
    assert routing is not None
    assert routing.status == "referred"
    [referral] = routing.referrals
    assert referral.handoff.consent_id == "consent-2"

    withdrawn = consent_withdrawn("case-c", "consent-2")
    await handlers.on_consent_withdrawn(withdrawn, stores.ctx)
    await handlers.on_consent_withdrawn(withdrawn, stores.ctx)
    routing = await stores.routings.get("case-c")
    assert routing is not None
    assert routing.referrals[0].status == "withdrawn"
    assert routing.status == "awaiting_consent"
    assert await outbox_types(stores, "case-c") == [
        CaseRoutingBlocked.TYPE,
        ReferralOffered.TYPE,
        ReferralWithdrawn.TYPE,
        CaseRoutingBlocked.TYPE,
    ]


async def test_decline_and_expiry_reroute_then_unassigned(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-d")), stores.ctx)
    routing = await stores.routings.get("case-d")
    assert routing is not None
    first = routing.referrals[0]
    assert first.partner_organisation_id == "org-hk-1"
    await handlers.decline(stores.ctx, first.id, "org-hk-1", "conflict of interest")
    routing = await stores.routings.get("case-d")
    assert routing is not None
    second = routing.referrals[1]
    assert (second.partner_organisation_id, second.status) == ("org-hk-2", "offered")

    stores.clock.advance(hours=71)
    assert await handlers.run_due(stores.ctx) == 0
    stores.clock.advance(hours=1)
    assert await handlers.run_due(stores.ctx) == 1
    routing = await stores.routings.get("case-d")
    assert routing is not None
    assert [r.status for r in routing.referrals] == ["declined", "expired"]
    assert routing.status == "unassigned"
    assert routing.reason is not None
    assert "declined or let the offer expire" in routing.reason
    assert (await outbox_types(stores, "case-d"))[-3:] == [
        ReferralOffered.TYPE,
        "org.lintas.referral.expired",
        CaseRoutingBlocked.TYPE,
    ]


async def test_a_stale_write_is_refused_and_retried(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-v")), stores.ctx)
    stale = await stores.routings.get("case-v")
    assert stale is not None
    rid = stale.referrals[0].id
    await handlers.accept(stores.ctx, rid, "org-hk-1")
    write = Write(set={"status": "stale"})
    assert not await stores.routings.documents.write("case-v", stale.version, write)
    # Two commands on one case racing in one process (API and scheduler share the
    # process): both apply, neither is lost.
    ctx = stores.ctx
    await asyncio.gather(
        *(
            handlers.progress(ctx, rid, "org-hk-1", Progress(note=str(n), at=stores.clock()))
            for n in range(5)
        )
    )
    routing = await stores.routings.get("case-v")
    assert routing is not None
    assert [h.status for h in routing.referrals[0].history].count("in_progress") == 5
    assert routing.version == 7  # inserted at 1, then accept and five progress reports


async def test_another_partners_referral_is_not_found(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-t")), stores.ctx)
    routing = await stores.routings.get("case-t")
    assert routing is not None
    with pytest.raises(ReferralNotFoundError):
        await handlers.accept(stores.ctx, routing.referrals[0].id, "org-hk-2")


async def test_reminders_are_sent_once_each_across_a_restart(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    from datetime import UTC, date, datetime

    injury = case(
        "case-rem", claims=(claim(ClaimType.WORK_INJURY, None, arose_on=date(2025, 10, 20)),)
    )
    await handlers.on_case_submitted(submitted(injury), stores.ctx)
    routing = await stores.routings.get("case-rem")
    assert routing is not None
    await handlers.accept(stores.ctx, routing.referrals[0].id, "org-hk-1")

    def days_sent(doc: Document) -> list[int]:
        return [
            entry_event(e).data["days_before"]
            for e in doc[OUTBOX_FIELD]
            if entry_event(e).type == DeadlineApproaching.TYPE
        ]

    stores.clock.now = datetime(2027, 9, 21, 12, tzinfo=UTC)  # 29 days before
    ctx = stores.ctx
    await asyncio.gather(handlers.run_due(ctx), handlers.run_due(ctx))
    stores.clock.now = datetime(2027, 10, 13, 12, tzinfo=UTC)  # 7 days before
    await handlers.run_due(ctx)
    # "Restart": a new process's adapters read the stored schedule, nothing in memory.
    restarted = stores.make()
    await handlers.run_due(restarted)
    await handlers.run_due(restarted)
    stores.clock.now = datetime(2027, 10, 19, 12, tzinfo=UTC)
    await handlers.run_due(restarted)
    await handlers.run_due(stores.make())
    doc = await mongo[database_name]["routings"].find_one({"_id": "case-rem"})
    assert doc is not None
    assert days_sent(doc) == [30, 7, 1]
    assert "next_due_at" not in doc  # nothing due: out of the due index


async def test_closing_the_case_withdraws_open_referrals(stores: Stores) -> None:
    await handlers.on_case_submitted(submitted(case("case-x")), stores.ctx)
    await handlers.on_case_closed(case_closed("case-x"), stores.ctx)
    routing = await stores.routings.get("case-x")
    assert routing is not None
    assert routing.referrals[0].status == "withdrawn"
    assert routing.status == "closed"
    [hk1] = [p for p in await stores.make().partners.in_country("HK") if p.id == "org-hk-1"]
    assert hk1.open_referrals == 0


async def test_erasure_withdraws_and_drops_every_sealed_field(
    stores: Stores, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    from datetime import UTC, datetime

    from lintas_shared.events import CaseErased, make_event

    vault = KeyVault(mongo[database_name]["case_keys"], MasterKeys.from_settings(CommonSettings()))
    keys = KeyCache(vault)
    ctx = dataclasses.replace(stores.ctx, keys=keys)
    key = await vault.create("case-e")
    await handlers.on_case_submitted(submitted(case("case-e", key=key)), ctx)
    # Partners' free text: a decline's reason and a progress note may name the worker.
    routing = await stores.routings.get("case-e")
    assert routing is not None
    first = routing.referrals[0].id
    reason = "we acted for Wulandari's agency"
    await handlers.decline(ctx, first, "org-hk-1", reason)
    routing = await stores.routings.get("case-e")
    assert routing is not None
    second = routing.referrals[1].id
    await handlers.accept(ctx, second, "org-hk-2")
    note = "Wulandari will bring her payslips"
    await handlers.progress(
        ctx, second, "org-hk-2", Progress(documents_needed=True, note=note, at=stores.clock())
    )
    # Sealed with the case's key in the routing and in its outbox (what the relay sends
    # to Kafka as it is): no byte of either text in clear, and the key opens both.
    raw = await stores.routings.raw("case-e")
    assert raw is not None
    assert "Wulandari" not in str(raw)
    declined = raw["referrals"][0]["history"][-1]
    assert (declined["status"], declined["reason"]) == ("declined", None)
    assert key.decrypt(PARTNER_NOTE_FIELD, declined["note"]) == reason
    assert key.decrypt(PARTNER_NOTE_FIELD, raw["referrals"][1]["progress"]["note"]) == note
    [sent] = [
        entry_event(e) for e in raw[OUTBOX_FIELD] if entry_event(e).type == ReferralDeclined.TYPE
    ]
    assert key.decrypt(PARTNER_NOTE_FIELD, sent.data["note"]) == reason
    assert "reason" not in sent.data or sent.data["reason"] is None

    erased = make_event(
        CaseErased(case_id="case-e", erased_at=datetime(2026, 9, 30, tzinfo=UTC)),
        source="/lintas/intake",
        subject="case-e",
    )
    assert len(keys) == 1  # kept since the first offer was sealed
    assert await vault.destroy("case-e")  # intake destroys the key, then announces it
    await handlers.on_case_erased(erased, ctx)
    assert len(keys) == 0  # and referral keeps it no longer either
    await handlers.on_case_erased(erased, ctx)
    doc = await stores.routings.raw("case-e")
    assert doc is not None
    state = {k: v for k, v in doc.items() if k != OUTBOX_FIELD}
    assert "enc:v1:" not in str(state)
    assert "Wulandari" not in str(doc)
    assert doc["erased"] is True
    assert (await outbox_types(stores, "case-e"))[-1] == ReferralWithdrawn.TYPE
    # The sealed copy already sent no longer opens: the key is gone.
    with pytest.raises(CaseKeyMissingError):
        await vault.get("case-e")


async def test_a_correction_is_applied_once_and_routes_new_claims(stores: Stores) -> None:
    from lintas_shared.events import CaseDetailsCorrected, make_event

    await handlers.on_case_submitted(
        submitted(case("case-fix", share_with=("HK", "ID"))), stores.ctx
    )
    fixed = case(
        "case-fix",
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
    )
    correction = make_event(
        CaseDetailsCorrected(case_id="case-fix", claims=fixed.claims, corrected_at=stores.clock()),
        source="/lintas/intake",
        subject="case-fix",
    )
    await handlers.on_case_details_corrected(correction, stores.ctx)
    await handlers.on_case_details_corrected(correction, stores.ctx)
    routing = await stores.routings.get("case-fix")
    assert routing is not None
    assert [(r.jurisdiction, r.partner_organisation_id) for r in routing.referrals] == [
        ("HK", "org-hk-1"),
        ("ID", "org-id-1"),
    ]
    assert await outbox_types(stores, "case-fix") == [ReferralOffered.TYPE, ReferralOffered.TYPE]
