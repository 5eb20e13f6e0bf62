"""Builders for the referral service's tests: cases with chosen claims, consents, events."""

from __future__ import annotations

from datetime import UTC, date, datetime

from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseClosed,
    CaseSubmitted,
    ClaimSummary,
    ConsentRecorded,
    ConsentSummary,
    ConsentWithdrawn,
    EmploymentSummary,
    WorkerInfo,
    make_event,
)
from lintas_shared.values import ClaimType, ConsentPurpose, Money, Sector

from tests.support.fixtures import fixture_key

INTAKE = "/lintas/intake"
WORKER_NAME = "Siti Contoh Rahayu"
WORKER_PHONE = "+6281298765432"
EMPLOYER = "Majikan Contoh Ltd"
AGENCY = "PT Agen Contoh"
DESCRIPTION = "Gaji empat bulan tidak dibayar"


def claim(
    type_: ClaimType = ClaimType.UNPAID_WAGES,
    value: str | None = "12000.00",
    currency: str = "HKD",
    arose_on: date | None = date(2026, 8, 31),
    claimants: int = 1,
) -> tuple[ClaimType, str | None, str, date | None, int]:
    """The facts of one claim, for `case`."""
    return (type_, value, currency, arose_on, claimants)


def case(
    case_id: str = "case-1",
    *,
    key: DataKey | None = None,
    country: str = "HK",
    sector: Sector = Sector.DOMESTIC_WORK,
    ended_on: date | None = date(2026, 8, 31),
    claims: tuple[tuple[ClaimType, str | None, str, date | None, int], ...] = (claim(),),
    share_with: tuple[str, ...] = ("HK",),
    share_with_organisations: tuple[str, ...] = (),
    purposes: tuple[ConsentPurpose, ...] = (ConsentPurpose.LEGAL_REFERRAL,),
    consent_id: str | None = None,
    agency_country: str | None = None,
    worker_country: str = "ID",
) -> CaseSubmitted:
    """A submitted case as intake would announce it, personal fields sealed with `key`."""
    key = key or fixture_key(case_id)
    return CaseSubmitted(
        case_id=case_id,
        reference="LB-7K3Q9",
        organisation_id="org-ngo",
        submitted_at=datetime(2026, 9, 16, tzinfo=UTC),
        worker=WorkerInfo(
            full_name=key.encrypt("worker.full_name", WORKER_NAME),
            phone=key.encrypt("worker.phone", WORKER_PHONE),
            phone_hash=key.keyed_hash("worker.phone", WORKER_PHONE),
            preferred_language="id",
            current_country=worker_country,
        ),
        employment=EmploymentSummary(
            country=country,
            sector=sector,
            started_on=date(2023, 2, 1),
            ended_on=ended_on,
            employer_name=key.encrypt("employment.employer_name", EMPLOYER),
            placement_agency=key.encrypt("employment.placement_agency", AGENCY),
            placement_agency_country=agency_country,
        ),
        claims=tuple(
            ClaimSummary(
                type=t,
                amount=None if v is None else Money(currency=cur, value=v),
                arose_on=arose,
                claimants=n,
                description=key.encrypt(f"claims[{i}].description", DESCRIPTION),
            )
            for i, (t, v, cur, arose, n) in enumerate(claims)
        ),
        consent=ConsentSummary(
            consent_id=consent_id or f"consent-{case_id}",
            purposes=purposes,
            share_with_countries=share_with,
            share_with_organisations=share_with_organisations,
        ),
    )


def submitted(payload: CaseSubmitted) -> CloudEvent:
    """The `case submitted` event of a case."""
    return make_event(payload, source=INTAKE, subject=payload.case_id)


def consent_recorded(
    case_id: str, consent_id: str, countries: tuple[str, ...] = ("HK",)
) -> CloudEvent:
    """A new consent for legal referral to `countries`."""
    return make_event(
        ConsentRecorded(
            case_id=case_id,
            consent=ConsentSummary(
                consent_id=consent_id,
                purposes=(ConsentPurpose.LEGAL_REFERRAL,),
                share_with_countries=countries,
            ),
        ),
        source=INTAKE,
        subject=case_id,
    )


def consent_withdrawn(case_id: str, consent_id: str) -> CloudEvent:
    """A consent withdrawn."""
    return make_event(
        ConsentWithdrawn(
            case_id=case_id, consent_id=consent_id, withdrawn_at=datetime(2026, 9, 20, tzinfo=UTC)
        ),
        source=INTAKE,
        subject=case_id,
    )


def case_closed(case_id: str) -> CloudEvent:
    """The NGO closed the case."""
    return make_event(
        CaseClosed(
            case_id=case_id, outcome="withdrawn", closed_at=datetime(2026, 9, 21, tzinfo=UTC)
        ),
        source=INTAKE,
        subject=case_id,
    )
