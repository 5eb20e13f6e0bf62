"""The bulk-import row format: one case per CSV row (or JSON Lines object), as both the
`lintas import` command and the console's upload read it. The API validates each case;
this only maps columns to the case document's fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: CSV columns; list-valued columns are separated by ";".
CSV_COLUMNS: Final = (
    "external_ref",
    "worker_full_name",
    "worker_phone",
    "worker_preferred_language",
    "worker_date_of_birth",
    "worker_gender",
    "worker_home_region",
    "worker_current_country",
    "worker_passport_number",
    "employment_country",
    "employment_sector",
    "employment_employer_name",
    "employment_placement_agency",
    "employment_started_on",
    "employment_ended_on",
    "claim_type",
    "claim_amount_currency",
    "claim_amount_value",
    "claim_arose_on",
    "claim_claimants",
    "claim_description",
    "consent_text_version",
    "consent_language",
    "consent_given_at",
    "consent_channel",
    "consent_taken_by",
    "consent_purposes",
    "consent_share_with_countries",
    "consent_share_with_organisations",
)
LIST_COLUMNS: Final = frozenset(
    {"consent_purposes", "consent_share_with_countries", "consent_share_with_organisations"}
)
#: A made-up valid row, for the template file offered on the upload page.
#: A valid row (the columns left out are optional); the import tests, `make bench` and the
#: console's template start from it. The console fills a blank `consent_taken_by` with the
#: person who uploads.
EXAMPLE_ROW: Final = {
    "external_ref": "NGO-LPG-2026-0042",
    "worker_full_name": "Contoh Pekerja",
    "worker_phone": "+6281234567890",
    "worker_preferred_language": "id",
    "worker_current_country": "ID",
    "employment_country": "HK",
    "employment_sector": "domestic_work",
    "employment_started_on": "2023-02-01",
    "employment_ended_on": "2026-08-31",
    "claim_type": "unpaid_wages",
    "claim_amount_currency": "HKD",
    "claim_amount_value": "12000.00",
    "claim_arose_on": "2026-08-31",
    "consent_text_version": "lintas-consent-id-1",
    "consent_language": "id",
    "consent_given_at": "2026-09-15T09:30:00+07:00",
    "consent_channel": "in_person",
    "consent_taken_by": "caseworker-17",
    "consent_purposes": "legal_referral;sms_updates",
    "consent_share_with_countries": "HK",
}


def csv_row_to_case(row: Mapping[Any, Any]) -> dict[str, Any]:
    """One CSV row as a case document (empty cells left out; an unknown column kept at
    the top, for the API to name)."""
    doc: dict[str, Any] = {"worker": {}, "employment": {}, "consent": {}}
    claim: dict[str, Any] = {}
    amount: dict[str, str] = {}
    for column, raw in row.items():
        if column is None or not isinstance(raw, str):
            continue  # cells beyond the header's columns
        value = raw.strip()
        column = column.strip()
        if not value or not column:
            continue
        if column == "external_ref":
            doc["external_ref"] = value
        elif column.startswith("claim_amount_"):
            amount[column.removeprefix("claim_amount_")] = value
        elif column.startswith("claim_"):
            name = column.removeprefix("claim_")
            claim[name] = int(value) if name == "claimants" and value.isdigit() else value
        else:
            section, _sep, name = column.partition("_")
            if section not in doc or not name:
                doc[column] = value
                continue
            doc[section][name] = (
                [v.strip() for v in value.split(";") if v.strip()]
                if column in LIST_COLUMNS
                else value
            )
    if amount:
        claim["amount"] = amount
    doc["claims"] = [claim]
    return doc
