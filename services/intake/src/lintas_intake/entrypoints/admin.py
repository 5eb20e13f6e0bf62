"""Audit listing (admins) and programme indicators (admins, or an NGO for its own cases).

A person's role narrows this: the audit listing is not programme staff's to read.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from lintas_shared.http import Problem
from lintas_shared.http_params import DateTimeParam, known_query
from lintas_shared.person_tokens import Role
from pydantic import BaseModel, Field

from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.domain.indicators import (
    DEFAULT_MIN_CELL,
    compute_indicators,
    indicators_csv_rows,
    suppression_note,
)
from lintas_intake.domain.organisation import Caller as CallerValue
from lintas_intake.domain.organisation import OrganisationKind
from lintas_intake.entrypoints.http import PROBLEMS, _caller

router = APIRouter(prefix="/v1", responses=PROBLEMS)
Caller = Annotated[CallerValue, Depends(_caller)]


@router.get(
    "/audit",
    tags=["audit"],
    summary="Audit entries of a case (admins)",
    responses={403: {"model": Problem, "description": "The person's role may not read it"}},
)
async def audit_entries(
    request: Request, caller: Caller, case_id: Annotated[str, Query(max_length=100)]
) -> list[dict[str, Any]]:
    """Who read or changed the case's personal data (organisation and, when a person
    acted through the console, the person's id), when, which fields, why. Each entry
    carries its chain fields (`seq`, `v`, `prev`, `mac`; older ones `prev_hash`, `hash`).
    Legal partners' reads of the case are listed by referral's `GET /v1/audit`."""
    if caller.organisation.kind is not OrganisationKind.ADMIN:
        raise HTTPException(404, "Not found.")
    if caller.role is Role.PROGRAMME:
        raise HTTPException(403, "The programme role does not read the audit trail.")
    trail: AuditTrail = request.app.state.audit
    return [{k: v for k, v in e.items() if k != "_id"} for e in await trail.for_case(case_id)]


# --- the indicators' shape, for the OpenAPI document (the route returns the dict) -------

_SUPPRESSED_COUNT = "null when suppressed (a small cell, or hidden so that none can be worked out)"


class GroupIndicators(BaseModel):
    """One group of a breakdown, e.g. women domestic workers with a disability."""

    group: dict[str, str] = Field(
        description="The group's value of each dimension, e.g. "
        '{"gender": "female", "sector": "domestic_work", "disability": "yes"}'
    )
    cases: int | None = Field(description=f"Cases in the group; {_SUPPRESSED_COUNT}")
    suppressed: bool = Field(description="Whether the group's figures are suppressed")
    median_days_submission_to_acceptance: float | None = Field(
        description="Median days from submission to a lawyer's first acceptance, of the "
        "group's accepted cases; null when none or suppressed"
    )
    amounts_recovered: dict[str, str] | None = Field(
        description="Per currency (ISO 4217), decimal strings; null when suppressed"
    )


class Breakdown(BaseModel):
    """Cases by one worker fact, or by a crossing of several."""

    dimensions: list[str]
    withheld: bool = Field(
        description="True when even suppressing every cell would let one be worked out "
        "from the total: then no group is listed"
    )
    groups: list[GroupIndicators]


class Suppression(BaseModel):
    """How small cells are suppressed (`LINTAS_INTAKE_INDICATORS_MIN_CELL`)."""

    min_cell: int = Field(description="Counts below this are suppressed")
    shown_as: str = Field(description='How the CSV shows a suppressed count, e.g. "<5"')
    suppressed_counts: dict[str, list[str]] = Field(
        description="The keys suppressed (null) in `cases_by.*` and `closed_by_outcome`"
    )


class Referrals(BaseModel):
    """The referral flow."""

    offered: int
    accepted: int
    declined: int
    median_hours_submission_to_acceptance: float | None


class IndicatorsReport(BaseModel):
    """Programme indicators of a period."""

    cases: int
    cases_by: dict[str, dict[str, int | None]] = Field(
        description=f"Cases by status, employment_country, claim_type, organisation; "
        f"{_SUPPRESSED_COUNT}"
    )
    referrals: Referrals
    closed_by_outcome: dict[str, int | None] = Field(description=_SUPPRESSED_COUNT)
    amounts_recovered: dict[str, str] = Field(description="Per currency, decimal strings")
    sms: dict[str, int]
    breakdowns: dict[str, Breakdown] = Field(
        description="By gender, age_band, disability, sector, employment_country, "
        "home_province, and the crossings gender_sector_disability and gender_age_band"
    )
    suppression: Suppression
    period: dict[str, str | None]


@router.get(
    "/reports/indicators",
    tags=["reports"],
    # Only the documented parameters: a misspelt `form=` would be silently ignored.
    dependencies=[Depends(known_query("from", "to", "format"))],
    summary="Programme indicators over a period (JSON or CSV)",
    responses={
        200: {
            "model": IndicatorsReport,
            "description": "The indicators: JSON, or CSV with `format=csv` (its first "
            "line a `#` comment stating the suppression rule)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def indicators(
    request: Request,
    caller: Caller,
    from_: Annotated[DateTimeParam | None, Query(alias="from")] = None,
    to: Annotated[DateTimeParam | None, Query()] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Cases by status, country, claim type and organisation; referral flow and median
    hours from submission to acceptance; outcomes and amounts recovered; SMS sent and
    delivered; and, per group of workers (GEDSI: gender, age band, disability, sector,
    employment country, home province, and the crossings gender by sector by disability
    and gender by age band), cases, median days to acceptance and amounts recovered.
    Counts below the minimum cell (5 by default) are suppressed (null, `suppressed`), and
    more where one could otherwise be worked out from a total. An NGO sees its own
    cases; an admin sees all."""
    organisation = caller.organisation
    if organisation.kind is OrganisationKind.LEGAL:
        raise HTTPException(404, "Not found.")
    scope = None if organisation.kind is OrganisationKind.ADMIN else organisation.id
    facts = await request.app.state.cases.facts(scope, from_, to)
    min_cell = getattr(request.app.state, "indicators_min_cell", DEFAULT_MIN_CELL)
    report = compute_indicators(facts, min_cell)
    report["period"] = {
        "from": from_.isoformat() if from_ else None,
        "to": to.isoformat() if to else None,
    }
    if format == "json":
        return report
    out = io.StringIO()
    out.write(f"# {suppression_note(min_cell)}\r\n")
    writer = csv.writer(out)
    writer.writerow(["indicator", "dimension", "value"])
    writer.writerows(indicators_csv_rows(report))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="indicators.csv"'},
    )
