"""Programme indicators (monitoring, evaluation and learning), from case facts alone.

Computed here rather than in the store: FerretDB v1's $group knows only $sum and $count,
and a median or a per-currency sum of decimal strings must be exact anyway.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

OFFERED = "org.lintas.referral.offered"
ACCEPTED = "org.lintas.referral.accepted"
DECLINED = "org.lintas.referral.declined"
SMS_SENT = "org.lintas.notification.sms_sent"
SMS_REPORTED = "org.lintas.notification.sms_delivery_reported"


@dataclass(frozen=True)
class CaseFacts:
    """What the indicators need of one case: no personal data."""

    organisation_id: str
    status: str
    employment_country: str | None
    claim_types: tuple[str, ...]
    submitted_at: datetime
    outcome: str | None
    amounts_recovered: tuple[tuple[str, str], ...]
    timeline: tuple[tuple[str, datetime, str], ...]  # (type, at, summary)


def compute_indicators(cases: Iterable[CaseFacts]) -> dict[str, Any]:
    """Counts by dimension, referral flow and timing, outcomes, amounts, SMS reach."""
    by: Mapping[str, Counter[str]] = defaultdict(Counter)
    outcomes: Counter[str] = Counter()
    recovered: dict[str, Decimal] = defaultdict(Decimal)
    referrals: Counter[str] = Counter()
    sms: Counter[str] = Counter()
    hours_to_accept: list[float] = []
    total = 0
    for case in cases:
        total += 1
        by["status"][case.status] += 1
        by["employment_country"][case.employment_country or "unknown"] += 1
        by["organisation"][case.organisation_id] += 1
        for claim_type in case.claim_types:
            by["claim_type"][claim_type] += 1
        if case.outcome:
            outcomes[case.outcome] += 1
            for currency, value in case.amounts_recovered:
                recovered[currency] += Decimal(value)
        first_accept = None
        for type_, at, summary in case.timeline:
            if type_ == OFFERED:
                referrals["offered"] += 1
            elif type_ == ACCEPTED:
                referrals["accepted"] += 1
                first_accept = first_accept or at
            elif type_ == DECLINED:
                referrals["declined"] += 1
            elif type_ == SMS_SENT:
                sms["sent"] += 1
            elif type_ == SMS_REPORTED and summary.startswith("delivered"):
                sms["delivered"] += 1
        if first_accept is not None:
            hours_to_accept.append((first_accept - case.submitted_at).total_seconds() / 3600)
    median = statistics.median(hours_to_accept) if hours_to_accept else None
    return {
        "cases": total,
        "cases_by": {dim: dict(sorted(counts.items())) for dim, counts in sorted(by.items())},
        "referrals": {
            "offered": referrals["offered"],
            "accepted": referrals["accepted"],
            "declined": referrals["declined"],
            "median_hours_submission_to_acceptance": None if median is None else round(median, 2),
        },
        "closed_by_outcome": dict(sorted(outcomes.items())),
        "amounts_recovered": {c: f"{v:.2f}" for c, v in sorted(recovered.items())},
        "sms": {"sent": sms["sent"], "delivered": sms["delivered"]},
    }


def indicators_csv_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The report flattened to (indicator, dimension, value) rows for spreadsheets."""
    rows = [("cases", "", str(report["cases"]))]
    for dim, counts in report["cases_by"].items():
        rows += [(f"cases_by_{dim}", key, str(n)) for key, n in counts.items()]
    for key, value in report["referrals"].items():
        rows.append((f"referrals_{key}", "", "" if value is None else str(value)))
    rows += [("closed_by_outcome", k, str(n)) for k, n in report["closed_by_outcome"].items()]
    rows += [("amount_recovered", c, v) for c, v in report["amounts_recovered"].items()]
    rows += [(f"sms_{k}", "", str(n)) for k, n in report["sms"].items()]
    return rows
