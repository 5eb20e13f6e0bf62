"""The example case of intake's API documentation, also what the fault-injection driver
submits (with its own external_ref and phone). Plain data: importing it starts nothing."""

from __future__ import annotations

import copy
from typing import Any

EXAMPLE_SUBMISSION: dict[str, Any] = {
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


def example_submission(external_ref: str, phone: str, **worker: Any) -> dict[str, Any]:
    """A copy of the example with its own external_ref, phone and any other worker fields
    (load and fault drivers: notify caps SMS per phone, intake refuses a reused ref)."""
    doc = copy.deepcopy(EXAMPLE_SUBMISSION)
    doc["external_ref"] = external_ref
    doc["worker"] |= {"phone": phone, **worker}
    return doc
