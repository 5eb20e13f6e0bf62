"""Intake's use cases: submit a case, and follow what routing reports about it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from lintas_shared.consumer import PermanentEventError
from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseRoutingBlocked,
    CaseSubmitted,
    ClaimSummary,
    ConsentSummary,
    EmploymentSummary,
    ReferralOffered,
    WorkerInfo,
    make_event,
    parse_payload,
)
from lintas_shared.ids import deterministic_id, new_case_reference, new_id

from lintas_intake.domain.case import Case, CaseStatus, ReferralSummary
from lintas_intake.domain.submission import CaseSubmission

SOURCE = "/lintas/intake"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class DuplicateExternalRefError(Exception):
    """The NGO already submitted a case with this external_ref."""

    def __init__(self, existing_case_id: str) -> None:
        super().__init__(f"external_ref already used by case {existing_case_id}")
        self.existing_case_id = existing_case_id


class DuplicateReferenceError(Exception):
    """The generated reference is taken (rare); a new one is drawn."""


class CaseKeys(Protocol):
    """The key vault, as intake uses it: one data key per case."""

    async def create(self, case_id: str) -> DataKey: ...


PhoneHasher = Callable[[str], str]


def initial_consent_id(case_id: str) -> str:
    """The id of the consent record that came with the submission."""
    return deterministic_id("consent", case_id, "1")


class CaseRepository(Protocol):
    """Where cases live; every write carries its events in the same document update."""

    async def add(self, case: Case, events: Sequence[CloudEvent]) -> None: ...

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None: ...

    async def save(
        self, case: Case, expected_version: int, events: Sequence[CloudEvent]
    ) -> bool: ...


def case_submitted_event(case: Case, key: DataKey, phone_hash: PhoneHasher) -> CloudEvent:
    """The event routing and notify need, with every personal field sealed by `key`.

    Dates of birth, home regions and identity numbers stay in intake altogether.
    """
    sub = case.submission

    def seal(field: str, value: str | None) -> str | None:
        return None if value is None else key.encrypt(field, value)

    payload = CaseSubmitted(
        case_id=case.id,
        reference=case.reference,
        organisation_id=case.organisation_id,
        submitted_at=case.submitted_at,
        worker=WorkerInfo(
            full_name=key.encrypt("worker.full_name", sub.worker.full_name),
            phone=key.encrypt("worker.phone", sub.worker.phone),
            phone_hash=phone_hash(sub.worker.phone),
            preferred_language=sub.worker.preferred_language,
            current_country=sub.worker.current_country,
        ),
        employment=EmploymentSummary(
            country=sub.employment.country,
            sector=sub.employment.sector,
            started_on=sub.employment.started_on,
            ended_on=sub.employment.ended_on,
            employer_name=seal("employment.employer_name", sub.employment.employer_name),
            placement_agency=seal("employment.placement_agency", sub.employment.placement_agency),
        ),
        claims=tuple(
            ClaimSummary(
                type=c.type,
                amount=c.amount,
                arose_on=c.arose_on,
                claimants=c.claimants,
                description=seal(f"claims[{i}].description", c.description),
            )
            for i, c in enumerate(sub.claims)
        ),
        consent=ConsentSummary(
            consent_id=initial_consent_id(case.id),
            purposes=sub.consent.purposes,
            share_with_countries=sub.consent.share_with_countries,
            share_with_organisations=sub.consent.share_with_organisations,
            given_at=sub.consent.given_at,
        ),
    )
    return make_event(payload, source=SOURCE, subject=case.id)


async def submit_case(
    submission: CaseSubmission,
    organisation_id: str,
    cases: CaseRepository,
    keys: CaseKeys,
    phone_hash: PhoneHasher,
    clock: Clock = utc_now,
) -> Case:
    """Store a new case and its `case submitted` event in one write."""
    case_id = new_id()
    key = await keys.create(case_id)
    for _ in range(10):
        now = clock()
        case = Case(
            id=case_id,
            reference=new_case_reference(),
            organisation_id=organisation_id,
            submission=submission,
            submitted_at=now,
            updated_at=now,
        )
        try:
            await cases.add(case, [case_submitted_event(case, key, phone_hash)])
        except DuplicateReferenceError:
            continue
        return case
    raise RuntimeError("could not draw a free case reference")


async def _apply(
    event: CloudEvent, case_id: str, cases: CaseRepository, change: Callable[[Case], Case]
) -> None:
    # Optimistic concurrency: re-read and retry if another writer got there first.
    for _ in range(10):
        case = await cases.get(case_id)
        if case is None:
            raise PermanentEventError(f"no case {case_id}")
        if case.has_processed(event.dedupe_key):
            return
        if await cases.save(change(case), case.version, []):
            return
    raise RuntimeError(f"case {case_id} kept changing under us")


async def on_referral_offered(
    event: CloudEvent, cases: CaseRepository, clock: Clock = utc_now
) -> None:
    """The case was offered to a partner: the NGO sees it as referred."""
    offer = parse_payload(event, ReferralOffered)
    summary = ReferralSummary(
        referral_id=offer.referral_id,
        partner_organisation_id=offer.partner_organisation_id,
        country=offer.country,
        offered_at=offer.offered_at,
    )
    await _apply(
        event,
        offer.case_id,
        cases,
        lambda case: case.referral_offered(summary, event.dedupe_key, clock()),
    )


async def on_routing_blocked(
    event: CloudEvent, cases: CaseRepository, clock: Clock = utc_now
) -> None:
    """Routing could not offer the case; the NGO sees the status and the reason."""
    blocked = parse_payload(event, CaseRoutingBlocked)
    await _apply(
        event,
        blocked.case_id,
        cases,
        lambda case: case.routing_blocked(
            CaseStatus(blocked.status), blocked.reason, event.dedupe_key, clock()
        ),
    )
