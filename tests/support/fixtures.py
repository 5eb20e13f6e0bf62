"""Test data: the issue's example case, and builders for events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseSubmitted,
    ClaimSummary,
    ConsentSummary,
    EmploymentSummary,
    WorkerContact,
    make_event,
)
from lintas_shared.values import ClaimType, ConsentPurpose, Money, Sector

#: The document issue #2 requires the API to accept unchanged.
EXAMPLE_CASE: dict[str, Any] = {
    "external_ref": "NGO-LPG-2026-0042",
    "worker": {
        "full_name": "Contoh Pekerja",
        "phone": "+6281234567890",
        "preferred_language": "id",
        "date_of_birth": "1994-05-17",
        "gender": "female",
        "home_region": "Lampung Timur, Lampung",
        "current_country": "ID",
    },
    "employment": {
        "country": "HK",
        "sector": "domestic_work",
        "employer_name": "Contoh Majikan",
        "placement_agency": "PT Contoh Penempatan",
        "started_on": "2023-02-01",
        "ended_on": "2026-08-31",
    },
    "claims": [
        {
            "type": "unpaid_wages",
            "amount": {"currency": "HKD", "value": "12000.00"},
            "arose_on": "2026-08-31",
            "description": "Gaji tiga bulan terakhir tidak dibayar",
        }
    ],
    "consent": {
        "text_version": "lintas-consent-id-1",
        "language": "id",
        "given_at": "2026-09-15T09:30:00+07:00",
        "channel": "in_person",
        "taken_by": "caseworker-17",
        "purposes": ["legal_referral", "sms_updates"],
        "share_with_countries": ["HK"],
    },
}


def example_case(**changes: Any) -> dict[str, Any]:
    """A deep copy of the example case with top-level keys replaced."""
    doc = copy.deepcopy(EXAMPLE_CASE)
    doc.update(changes)
    return doc


def case_submitted(
    case_id: str = "case-1",
    *,
    country: str = "HK",
    share_with: tuple[str, ...] = ("HK",),
    purposes: tuple[ConsentPurpose, ...] = (
        ConsentPurpose.LEGAL_REFERRAL,
        ConsentPurpose.SMS_UPDATES,
    ),
    claim_types: tuple[ClaimType, ...] = (ClaimType.UNPAID_WAGES,),
    language: str = "id",
    phone: str = "+6281234567890",
    reference: str = "LB-7K3Q9",
) -> CloudEvent:
    """A `case submitted` event as intake would publish it."""
    payload = CaseSubmitted(
        case_id=case_id,
        reference=reference,
        organisation_id="org-ngo",
        submitted_at=datetime(2026, 9, 16, tzinfo=UTC),
        worker=WorkerContact(phone=phone, preferred_language=language, current_country="ID"),
        employment=EmploymentSummary(
            country=country, sector=Sector.DOMESTIC_WORK, started_on=datetime(2023, 2, 1).date()
        ),
        claims=tuple(
            ClaimSummary(type=t, amount=Money(currency="HKD", value="12000.00"))
            for t in claim_types
        ),
        consent=ConsentSummary(purposes=purposes, share_with_countries=share_with),
    )
    return make_event(payload, source="/lintas/intake", subject=case_id)
