"""Test data: the issue's example case, and builders for events."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lintas_shared.crypto import CaseKeyMissingError, DataKey, StoredKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseSubmitted,
    ClaimSummary,
    ConsentSummary,
    EmploymentSummary,
    WorkerInfo,
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


#: How long before today the e2e example's claim arose: well inside MECAB's 12 months.
RECENT_CLAIM_AGE = timedelta(days=60)


def recent_example_case(**changes: Any) -> dict[str, Any]:
    """The example case with its claim, the end of the job and the consent dated relative
    to today, for tests that run on the wall clock (the stack routes by today's date: a
    fixed date would leave MECAB's 12 months one day and change where the claim goes)."""
    doc = example_case(**changes)
    arose = datetime.now(UTC).date() - RECENT_CLAIM_AGE
    doc["employment"]["ended_on"] = arose.isoformat()
    for claim in doc["claims"]:
        claim["arose_on"] = arose.isoformat()
    doc["consent"]["given_at"] = (
        datetime.now(UTC) - RECENT_CLAIM_AGE + timedelta(days=10)
    ).isoformat()
    return doc


PHONE_HASH_SECRET = "test-phone-hash-key"


def fixture_key(case_id: str) -> DataKey:
    """A deterministic data key per case, for tests without a vault."""
    return DataKey(case_id, hashlib.sha256(case_id.encode()).digest())


class FakeKeyVault:
    """The key vault in memory: create (one or a batch), get (with its batch), destroy."""

    def __init__(self) -> None:
        self.keys: dict[str, DataKey] = {}
        #: case id -> the batch its key was stored in (`create_many`).
        self.batches: dict[str, str] = {}
        #: When every key was stored, as `entry` says.
        self.created_at = datetime.now(UTC)

    async def create(self, case_id: str) -> DataKey:
        return self.keys.setdefault(case_id, fixture_key(case_id))

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]:
        batch = f"batch-{len(set(self.batches.values())) + 1}"
        for case_id in case_ids:
            if case_id not in self.keys:
                self.batches[case_id] = batch
        return [await self.create(case_id) for case_id in case_ids]

    async def get(self, case_id: str) -> DataKey:
        return (await self.entry(case_id)).key

    async def entry(self, case_id: str) -> StoredKey:
        if case_id not in self.keys:
            raise CaseKeyMissingError(case_id)
        return StoredKey(self.keys[case_id], self.batches.get(case_id), self.created_at)

    async def batch(self, batch_id: str) -> list[DataKey]:
        return [key for case_id, key in self.keys.items() if self.batches.get(case_id) == batch_id]

    async def destroy(self, case_id: str) -> bool:
        return self.keys.pop(case_id, None) is not None

    async def destroy_many(self, case_ids: Sequence[str]) -> int:
        return sum([await self.destroy(case_id) for case_id in case_ids])


def case_submitted(
    case_id: str = "case-1",
    *,
    key: DataKey | None = None,
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
    """A `case submitted` event as intake would publish it, sealed with `key`."""
    key = key or fixture_key(case_id)
    payload = CaseSubmitted(
        case_id=case_id,
        reference=reference,
        organisation_id="org-ngo",
        submitted_at=datetime(2026, 9, 16, tzinfo=UTC),
        worker=WorkerInfo(
            full_name=key.encrypt("worker.full_name", "Contoh Pekerja"),
            phone=key.encrypt("worker.phone", phone),
            phone_hash=key.keyed_hash("worker.phone", phone),
            preferred_language=language,
            current_country="ID",
        ),
        employment=EmploymentSummary(
            country=country,
            sector=Sector.DOMESTIC_WORK,
            started_on=datetime(2023, 2, 1).date(),
        ),
        claims=tuple(
            ClaimSummary(type=t, amount=Money(currency="HKD", value="12000.00"))
            for t in claim_types
        ),
        consent=ConsentSummary(
            consent_id=f"consent-{case_id}",
            purposes=purposes,
            share_with_countries=share_with,
        ),
    )
    return make_event(payload, source="/lintas/intake", subject=case_id)
