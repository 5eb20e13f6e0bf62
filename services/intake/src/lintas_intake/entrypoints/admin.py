"""Audit listing (admins) and programme indicators (admins, or an NGO for its own cases).

A person's role narrows this: the audit listing is not programme staff's to read.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from lintas_shared.http import Problem
from lintas_shared.person_tokens import Role

from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.domain.indicators import compute_indicators, indicators_csv_rows
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
    acted through the console, the person's id), when, which fields, why."""
    if caller.organisation.kind is not OrganisationKind.ADMIN:
        raise HTTPException(404, "Not found.")
    if caller.role is Role.PROGRAMME:
        raise HTTPException(403, "The programme role does not read the audit trail.")
    trail: AuditTrail = request.app.state.audit
    return [{k: v for k, v in e.items() if k != "_id"} for e in await trail.for_case(case_id)]


@router.get(
    "/reports/indicators",
    tags=["reports"],
    summary="Programme indicators over a period (JSON or CSV)",
    responses={
        200: {
            "description": "The indicators: JSON, or CSV with `format=csv`",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def indicators(
    request: Request,
    caller: Caller,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Cases by status, country, claim type and organisation; referral flow and median
    hours from submission to acceptance; outcomes and amounts recovered; SMS sent and
    delivered. An NGO sees its own cases; an admin sees all."""
    organisation = caller.organisation
    if organisation.kind is OrganisationKind.LEGAL:
        raise HTTPException(404, "Not found.")
    scope = None if organisation.kind is OrganisationKind.ADMIN else organisation.id
    facts = await request.app.state.cases.facts(scope, from_, to)
    report = compute_indicators(facts)
    report["period"] = {
        "from": from_.isoformat() if from_ else None,
        "to": to.isoformat() if to else None,
    }
    if format == "json":
        return report
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["indicator", "dimension", "value"])
    writer.writerows(indicators_csv_rows(report))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="indicators.csv"'},
    )
