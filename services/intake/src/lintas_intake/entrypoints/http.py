"""The partner-NGO case API under /v1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request, Response, status
from lintas_shared.http import Problem, problem_response
from pydantic import BaseModel

from lintas_intake.adapters.case_repository import MongoCaseRepository
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.case import Case, CaseStatus
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.handlers import DuplicateExternalRefError, submit_case

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

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing, unknown or revoked API key"},
    404: {"model": Problem, "description": "No such case for this organisation"},
}


class ReferralView(BaseModel):
    """Who the case was handed to, and when."""

    referral_id: str
    partner_organisation_id: str
    country: str
    offered_at: datetime


class CaseCreated(BaseModel):
    """The answer to a new case."""

    id: str
    reference: str
    external_ref: str
    status: CaseStatus
    submitted_at: datetime


class CaseView(CaseCreated):
    """A case as its NGO sees it."""

    status_reason: str | None
    updated_at: datetime
    referral: ReferralView | None
    case: CaseSubmission


def _view(case: Case) -> CaseView:
    referral = None if case.referral is None else ReferralView(**vars(case.referral))
    return CaseView(
        id=case.id,
        reference=case.reference,
        external_ref=case.submission.external_ref,
        status=case.status,
        submitted_at=case.submitted_at,
        status_reason=case.status_reason,
        updated_at=case.updated_at,
        referral=referral,
        case=case.submission,
    )


def _cases(request: Request) -> MongoCaseRepository:
    repo: MongoCaseRepository = request.app.state.cases
    return repo


async def _caller(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="Your organisation's API key")] = None,
) -> Organisation:
    directory: MongoOrganisationDirectory = request.app.state.organisations
    organisation = await directory.by_api_key(x_api_key) if x_api_key else None
    if organisation is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid X-API-Key header is required.",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    return organisation


Caller = Annotated[Organisation, Depends(_caller)]
Cases = Annotated[MongoCaseRepository, Depends(_cases)]

router = APIRouter(prefix="/v1", tags=["cases"], responses=PROBLEMS)


@router.post(
    "/cases",
    status_code=status.HTTP_201_CREATED,
    response_model=CaseCreated,
    summary="Submit a new case",
    responses={
        403: {"model": Problem, "description": "Only NGOs submit cases"},
        409: {"model": Problem, "description": "external_ref already used"},
        422: {"model": Problem, "description": "Invalid fields, each named"},
    },
)
async def create_case(
    request: Request,
    caller: Caller,
    cases: Cases,
    response: Response,
    submission: Annotated[
        CaseSubmission,
        Body(
            openapi_examples={
                "hong_kong_unpaid_wages": {
                    "summary": "Unpaid wages in Hong Kong",
                    "value": EXAMPLE_SUBMISSION,
                }
            }
        ),
    ],
) -> CaseCreated | Response:
    """Store the case and announce it; routing and the worker's SMS follow from the event."""
    if caller.kind is not OrganisationKind.NGO:
        return problem_response(403, "Forbidden", "Only NGO organisations submit cases.")
    try:
        case = await submit_case(
            submission, caller.id, cases, request.app.state.keys, request.app.state.phone_hash
        )
    except DuplicateExternalRefError as exc:
        return problem_response(409, "Conflict", str(exc), existing_case_id=exc.existing_case_id)
    response.headers["Location"] = f"/v1/cases/{case.id}"
    return CaseCreated(
        id=case.id,
        reference=case.reference,
        external_ref=submission.external_ref,
        status=case.status,
        submitted_at=case.submitted_at,
    )


@router.get("/cases/{case_id}", response_model=CaseView, summary="Read one of your cases")
async def get_case(case_id: str, caller: Caller, cases: Cases) -> CaseView:
    """The case with its current status and, once routed, its referral."""
    owner = None if caller.can_read_all_cases() else caller.id
    case = await cases.get(case_id, organisation_id=owner)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such case.")
    return _view(case)
