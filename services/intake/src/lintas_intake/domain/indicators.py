"""Programme indicators (monitoring, evaluation and learning), from case facts alone.

Computed here rather than in the store: FerretDB v1's $group knows only $sum and $count,
and a median or a per-currency sum of decimal strings must be exact anyway.

Who the workers are (GEDSI: gender, age band, disability, sector, employment country,
home province) comes from non-identifying facts derived when the case is stored
(`derive_worker_facts`), never from the answers themselves. Every count of cases by a
category is protected against small cells (`suppress`): a cell below the minimum shows
as suppressed, and more cells are hidden until none of the hidden ones can be worked
out from the breakdown's total.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from lintas_intake.domain.submission import CaseSubmission

OFFERED = "org.lintas.referral.offered"
ACCEPTED = "org.lintas.referral.accepted"
DECLINED = "org.lintas.referral.declined"
SMS_SENT = "org.lintas.notification.sms_sent"
SMS_REPORTED = "org.lintas.notification.sms_delivery_reported"

K = TypeVar("K", bound=Hashable)

UNKNOWN: Final = "unknown"
#: Age at submission, in these bands (`unknown` without a date of birth).
AGE_BANDS: Final = ("under_18", "18-24", "25-34", "35-44", "45+", UNKNOWN)
#: The default smallest count a report shows (`LINTAS_INTAKE_INDICATORS_MIN_CELL`).
DEFAULT_MIN_CELL: Final = 5

#: The GEDSI breakdowns of the report, each a tuple of worker facts: one-way, then the
#: crossings.
BREAKDOWNS: Final[dict[str, tuple[str, ...]]] = {
    "gender": ("gender",),
    "age_band": ("age_band",),
    "disability": ("disability",),
    "sector": ("sector",),
    "employment_country": ("employment_country",),
    "home_province": ("home_province",),
    "gender_sector_disability": ("gender", "sector", "disability"),
    "gender_age_band": ("gender", "age_band"),
}


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
    gender: str = UNKNOWN
    age_band: str = UNKNOWN
    disability: str = UNKNOWN
    sector: str = UNKNOWN
    home_province: str = UNKNOWN

    def fact(self, name: str) -> str:
        """One worker fact by name (`unknown` when not recorded)."""
        value = getattr(self, name)
        return str(value) if value else UNKNOWN


# --- facts derived when the case is stored -------------------------------------------------


def age_band(date_of_birth: date | None, on: date) -> str:
    """The band of the age reached on `on` (the submission's date)."""
    if date_of_birth is None:
        return UNKNOWN
    age = (
        on.year
        - date_of_birth.year
        - ((on.month, on.day) < (date_of_birth.month, date_of_birth.day))
    )
    if age < 18:
        return "under_18"
    if age < 25:
        return "18-24"
    if age < 35:
        return "25-34"
    if age < 45:
        return "35-44"
    return "45+"


def home_province(home_region: str | None) -> str:
    """The part of `home_region` after its last comma, trimmed ("Lampung Timur, Lampung"
    is Lampung); `unknown` without a comma, so a lone village name is never kept."""
    if not home_region or "," not in home_region:
        return UNKNOWN
    province = " ".join(home_region.rsplit(",", 1)[1].split())
    return province or UNKNOWN


def derive_worker_facts(
    submission: CaseSubmission | None, submitted_at: datetime
) -> dict[str, str]:
    """The non-identifying facts the indicators use, kept unsealed beside the sealed
    answers (all `unknown` once the worker's data is erased)."""
    if submission is None:
        return dict.fromkeys(
            ("gender", "age_band", "disability", "sector", "home_province"), UNKNOWN
        )
    worker = submission.worker
    functioning = worker.functioning
    return {
        "gender": UNKNOWN if worker.gender is None else worker.gender.value,
        "age_band": age_band(worker.date_of_birth, submitted_at.date()),
        "disability": UNKNOWN if functioning is None else functioning.disability(),
        "sector": submission.employment.sector.value,
        "home_province": home_province(worker.home_region),
    }


# --- small-cell suppression ---------------------------------------------------------------


def _pinned(hidden: Mapping[K, int], min_cell: int) -> bool:
    """Whether a reader who knows the sum of the hidden cells (the breakdown's total less
    the cells shown), that each is at least 1 (only groups with cases are listed), and
    that each shows as below `min_cell`, can tell any hidden cell's exact count."""
    k, total = len(hidden), sum(hidden.values())
    if k == 0:
        return False
    if k == 1 or total == k:  # the only one, or all of them 1
        return True
    return min_cell > 2 and total == k * (min_cell - 1)  # all of them min_cell - 1


def suppress(counts: Mapping[K, int], min_cell: int) -> tuple[frozenset[K], bool]:
    """The cells of one breakdown to hide, and whether the whole breakdown is withheld.

    Primary: every cell below `min_cell`. Secondary: while a hidden cell could still be
    worked out from the total (one hidden cell alone, or all hidden cells 1, or all
    `min_cell - 1`), the smallest shown cell is hidden too. If even hiding every cell
    leaves that, the breakdown is withheld (no groups listed).
    """
    cells = {k: n for k, n in counts.items() if n > 0}
    if min_cell <= 1:
        return frozenset(), False
    hidden = {k for k, n in cells.items() if n < min_cell}
    while _pinned({k: cells[k] for k in hidden}, min_cell):
        shown = sorted((n, str(k), k) for k, n in cells.items() if k not in hidden)
        if not shown:
            return frozenset(cells), True
        hidden.add(shown[0][2])
    return frozenset(hidden), False


def _suppressed_counts(
    counts: Mapping[str, int], min_cell: int
) -> tuple[dict[str, int | None], list[str]]:
    """A `{key: n}` count with hidden cells as None (withheld: nothing), and their keys."""
    hidden, withheld = suppress(counts, min_cell)
    if withheld:
        return {}, sorted(counts)
    shown = {k: (None if k in hidden else n) for k, n in sorted(counts.items()) if n > 0}
    return shown, sorted(str(k) for k in hidden)


# --- the report ----------------------------------------------------------------------------


def _first_acceptance(case: CaseFacts) -> datetime | None:
    return next((at for type_, at, _summary in case.timeline if type_ == ACCEPTED), None)


def _median(values: list[float], digits: int) -> float | None:
    return round(statistics.median(values), digits) if values else None


def _group_row(
    key: tuple[str, ...], dims: tuple[str, ...], cases: list[CaseFacts], hidden: bool
) -> dict[str, Any]:
    group = dict(zip(dims, key, strict=True))
    if hidden:
        return {
            "group": group,
            "cases": None,
            "suppressed": True,
            "median_days_submission_to_acceptance": None,
            "amounts_recovered": None,
        }
    days = []
    recovered: dict[str, Decimal] = defaultdict(Decimal)
    for case in cases:
        accepted = _first_acceptance(case)
        if accepted is not None:
            days.append((accepted - case.submitted_at).total_seconds() / 86400)
        if case.outcome:
            for currency, value in case.amounts_recovered:
                recovered[currency] += Decimal(value)
    return {
        "group": group,
        "cases": len(cases),
        "suppressed": False,
        "median_days_submission_to_acceptance": _median(days, 2),
        "amounts_recovered": {c: f"{v:.2f}" for c, v in sorted(recovered.items())},
    }


def breakdown(cases: list[CaseFacts], dims: tuple[str, ...], min_cell: int) -> dict[str, Any]:
    """Cases grouped by the worker facts `dims`, with the median days from submission to
    a lawyer's acceptance and the amounts recovered per group; small cells suppressed."""
    groups: dict[tuple[str, ...], list[CaseFacts]] = defaultdict(list)
    for case in cases:
        groups[tuple(case.fact(d) for d in dims)].append(case)
    hidden, withheld = suppress({k: len(v) for k, v in groups.items()}, min_cell)
    rows = [] if withheld else [_group_row(k, dims, groups[k], k in hidden) for k in sorted(groups)]
    return {"dimensions": list(dims), "withheld": withheld, "groups": rows}


def compute_indicators(
    cases: Iterable[CaseFacts], min_cell: int = DEFAULT_MIN_CELL
) -> dict[str, Any]:
    """Counts by dimension, referral flow and timing, outcomes, amounts, SMS reach, and
    the GEDSI breakdowns; counts of cases below `min_cell` suppressed (`suppress`)."""
    facts = list(cases)
    by: Mapping[str, Counter[str]] = defaultdict(Counter)
    outcomes: Counter[str] = Counter()
    recovered: dict[str, Decimal] = defaultdict(Decimal)
    referrals: Counter[str] = Counter()
    sms: Counter[str] = Counter()
    hours_to_accept: list[float] = []
    for case in facts:
        by["status"][case.status] += 1
        by["employment_country"][case.employment_country or UNKNOWN] += 1
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
    suppressed: dict[str, list[str]] = {}
    cases_by: dict[str, dict[str, int | None]] = {}
    for dim, counts in sorted(by.items()):
        cases_by[dim], hidden = _suppressed_counts(counts, min_cell)
        if hidden:
            suppressed[f"cases_by.{dim}"] = hidden
    closed_by_outcome, hidden = _suppressed_counts(outcomes, min_cell)
    if hidden:
        suppressed["closed_by_outcome"] = hidden
    return {
        "cases": len(facts),
        "cases_by": cases_by,
        "referrals": {
            "offered": referrals["offered"],
            "accepted": referrals["accepted"],
            "declined": referrals["declined"],
            "median_hours_submission_to_acceptance": _median(hours_to_accept, 2),
        },
        "closed_by_outcome": closed_by_outcome,
        "amounts_recovered": {c: f"{v:.2f}" for c, v in sorted(recovered.items())},
        "sms": {"sent": sms["sent"], "delivered": sms["delivered"]},
        "breakdowns": {name: breakdown(facts, dims, min_cell) for name, dims in BREAKDOWNS.items()},
        "suppression": {
            "min_cell": min_cell,
            "shown_as": f"<{min_cell}",
            "suppressed_counts": suppressed,
        },
    }


def suppression_note(min_cell: int) -> str:
    """The suppression rule in one sentence (the CSV's first line)."""
    return (
        f"Counts below {min_cell} cases are suppressed and shown as <{min_cell}; where that "
        "would let a hidden count be worked out from a total, the next smallest count of "
        "the same breakdown is suppressed too (also shown as "
        f"<{min_cell}); a breakdown that cannot be protected is withheld."
    )


def _group_label(group: Mapping[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in group.items())


def indicators_csv_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The report flattened to (indicator, dimension, value) rows for spreadsheets;
    a suppressed count is written as `<min_cell`."""
    mark = report["suppression"]["shown_as"]

    def count(n: int | None) -> str:
        return mark if n is None else str(n)

    rows = [("cases", "", str(report["cases"]))]
    for dim, counts in report["cases_by"].items():
        rows += [(f"cases_by_{dim}", key, count(n)) for key, n in counts.items()]
    for key, value in report["referrals"].items():
        rows.append((f"referrals_{key}", "", "" if value is None else str(value)))
    rows += [("closed_by_outcome", k, count(n)) for k, n in report["closed_by_outcome"].items()]
    rows += [("amount_recovered", c, v) for c, v in report["amounts_recovered"].items()]
    rows += [(f"sms_{k}", "", str(n)) for k, n in report["sms"].items()]
    for name, part in report["breakdowns"].items():
        if part["withheld"]:
            rows.append((f"{name}.cases", "", "withheld"))
        for row in part["groups"]:
            label = _group_label(row["group"])
            rows.append((f"{name}.cases", label, count(row["cases"])))
            if row["suppressed"]:
                continue
            median = row["median_days_submission_to_acceptance"]
            rows.append(
                (
                    f"{name}.median_days_submission_to_acceptance",
                    label,
                    "" if median is None else str(median),
                )
            )
            rows += [
                (f"{name}.amount_recovered.{c}", label, v)
                for c, v in row["amounts_recovered"].items()
            ]
    return rows
