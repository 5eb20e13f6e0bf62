"""Intake's use cases against an in-memory repository."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lintas_intake.domain.case import Case, CaseStatus
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.handlers import on_referral_offered, on_routing_blocked, submit_case
from lintas_shared.consumer import PermanentEventError
from lintas_shared.crypto import phone_lookup_hash
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseRoutingBlocked,
    CaseSubmitted,
    ReferralOffered,
    make_event,
    parse_payload,
)

from tests.support.fixtures import EXAMPLE_CASE, PHONE_HASH_SECRET, FakeKeyVault

VAULT = FakeKeyVault()

pytestmark = pytest.mark.unit


class InMemoryCases:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.outbox: list[CloudEvent] = []

    async def add(self, case: Case, events: Sequence[CloudEvent]) -> None:
        self.cases[case.id] = case
        self.outbox.extend(events)

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None:
        case = self.cases.get(case_id)
        if case is None or (organisation_id and case.organisation_id != organisation_id):
            return None
        return case

    async def save(self, case: Case, expected_version: int, events: Sequence[CloudEvent]) -> bool:
        if self.cases[case.id].version != expected_version:
            return False
        self.cases[case.id] = case
        self.outbox.extend(events)
        return True


def now() -> datetime:
    return datetime(2026, 9, 16, 8, 0, tzinfo=UTC)


async def submitted(cases: InMemoryCases) -> Case:
    return await submit_case(
        CaseSubmission.model_validate(EXAMPLE_CASE),
        "org-ngo",
        cases,
        VAULT,
        lambda phone: phone_lookup_hash(phone, PHONE_HASH_SECRET),
        now,
    )


async def test_submitting_stores_the_case_and_its_event_together() -> None:
    cases = InMemoryCases()
    case = await submitted(cases)
    assert case.status is CaseStatus.SUBMITTED
    [event] = cases.outbox
    payload = parse_payload(event, CaseSubmitted)
    assert event.subject == case.id
    assert payload.reference == case.reference
    key = await VAULT.get(case.id)
    # Contact details travel sealed with the case's key; nothing personal in clear.
    assert key.decrypt("worker.phone", payload.worker.phone) == "+6281234567890"
    assert key.decrypt("worker.full_name", payload.worker.full_name) == "Contoh Pekerja"
    assert payload.worker.phone_hash == phone_lookup_hash("+6281234567890", PHONE_HASH_SECRET)
    for secret in ("Contoh", "6281234567890", "1994-05-17", "Lampung", "Gaji tiga", "Majikan"):
        assert secret not in event.model_dump_json()


def offered(case_id: str) -> CloudEvent:
    return make_event(
        ReferralOffered(
            referral_id="ref-1",
            case_id=case_id,
            partner_organisation_id="org-hk",
            country="HK",
            offered_at=now(),
        ),
        source="/lintas/referral",
        subject=case_id,
    )


async def test_referral_offered_marks_the_case_referred_once() -> None:
    cases = InMemoryCases()
    case = await submitted(cases)
    event = offered(case.id)
    await on_referral_offered(event, cases, now)
    after_first = cases.cases[case.id]
    await on_referral_offered(event, cases, now)  # redelivery

    assert after_first.status is CaseStatus.REFERRED
    assert after_first.referral is not None
    assert after_first.referral.partner_organisation_id == "org-hk"
    assert cases.cases[case.id] == after_first  # the redelivery changed nothing


async def test_routing_blocked_shows_the_reason() -> None:
    cases = InMemoryCases()
    case = await submitted(cases)
    event = make_event(
        CaseRoutingBlocked(
            case_id=case.id,
            status="awaiting_consent",
            reason="consent does not cover sharing with HK",
        ),
        source="/lintas/referral",
        subject=case.id,
    )
    await on_routing_blocked(event, cases, now)
    assert cases.cases[case.id].status is CaseStatus.AWAITING_CONSENT
    assert cases.cases[case.id].status_reason == "consent does not cover sharing with HK"


async def test_closed_case_is_not_reopened_by_routing_news() -> None:
    cases = InMemoryCases()
    case = await submitted(cases)
    cases.cases[case.id] = replace(cases.cases[case.id], status=CaseStatus.CLOSED)
    await on_referral_offered(offered(case.id), cases, now)
    assert cases.cases[case.id].status is CaseStatus.CLOSED


async def test_news_about_an_unknown_case_is_a_permanent_error() -> None:
    with pytest.raises(PermanentEventError):
        await on_referral_offered(offered("no-such-case"), InMemoryCases(), now)
