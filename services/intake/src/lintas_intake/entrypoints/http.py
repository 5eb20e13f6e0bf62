"""The partner-NGO case API under /v1.

Callers: a system with its organisation's `X-API-Key`, or a person through the console
with a short-lived token (`Authorization: Bearer`, see `lintas_shared.person_tokens`),
who acts for their organisation and is named in the timeline and the audit trail.

Tenancy: an NGO sees and changes only the cases it submitted; an admin sees all (and
every admin read of personal data is audited like any other); a legal partner sees
cases only through referral's partner API. Another organisation's case answers 404.
A person's role narrows what their organisation may do: programme staff read and submit
cases and read the indicators, but do not change or erase cases (403).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Body,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.security import HTTPAuthorizationCredentials
from lintas_shared.http import Problem, problem_response, validation_errors
from lintas_shared.http_auth import (
    api_key_scheme,
    authenticated,
    person_claims,
    person_token_scheme,
    unauthorised,
)
from lintas_shared.http_params import DateTimeParam
from lintas_shared.values import ClaimType, CountryCode
from pydantic import ValidationError

from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.case import CaseStateError, CaseStatus
from lintas_intake.domain.organisation import Caller as CallerValue
from lintas_intake.domain.organisation import OrganisationKind
from lintas_intake.domain.records import DocumentRecord
from lintas_intake.domain.submission import CaseSubmission, Consent
from lintas_intake.entrypoints.examples import EXAMPLE_SUBMISSION
from lintas_intake.entrypoints.schemas import (
    CaseCreated,
    CaseList,
    CaseListItem,
    CaseView,
    CloseIn,
    ConsentView,
    DocumentIn,
    DocumentView,
    NoteIn,
    NoteView,
    SmsPreferenceIn,
    Timeline,
    TimelineEntryView,
    case_view,
    example,
)
from lintas_intake.handlers import (
    CaseFilters,
    CaseNotFoundError,
    CaseService,
    CaseSort,
    CursorError,
    DuplicateExternalRefError,
    IdempotencyConflictError,
    VersionMismatchError,
    request_hash,
)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "Missing, unknown or revoked API key; or a person token that is "
        "invalid, expired, meant for another service or of an unknown organisation",
    },
    404: {"model": Problem, "description": "No such case for this organisation"},
}
#: What a person's role may refuse before anything else is looked at.
ROLE_PROBLEM: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "The person's role may not change or erase cases"},
}
#: A case reference (`lintas_shared.ids.new_case_reference`), in any letter case.
REFERENCE_PATTERN = "^[Ll][Bb]-[A-Za-z0-9]{5}$"
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **ROLE_PROBLEM,
    409: {"model": Problem, "description": "Not allowed in the case's state"},
    422: {"model": Problem, "description": "Invalid fields, each named"},
}
PERSONAL_READ = ["worker", "employment", "claims", "consents", "notes", "documents"]

API_KEY = api_key_scheme("Your organisation's API key (systems and scripts)")
PERSON_TOKEN = person_token_scheme(
    "A person's short-lived token, signed by the Lintas console "
    "(EdDSA; audience `lintas-intake`; claims `sub` = person, `org`, `role`)"
)


async def _caller(
    request: Request,
    api_key: Annotated[str | None, Security(API_KEY)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(PERSON_TOKEN)] = None,
) -> CallerValue:
    """The organisation behind an API key, or the person (and organisation) behind a
    console token. An API key, when sent, is what counts."""
    directory: MongoOrganisationDirectory = request.app.state.organisations
    if api_key:
        organisation = await directory.by_api_key(api_key)
        if organisation is None:
            raise unauthorised("A valid X-API-Key header is required.", "ApiKey")
        authenticated(request)
        return CallerValue(organisation)
    if bearer is None:
        raise unauthorised("A valid X-API-Key header is required.", "ApiKey")
    claims = person_claims(request, bearer)
    organisation = await directory.get(claims.organisation_id)
    if organisation is None:
        raise unauthorised("The bearer token's organisation is not known here.", "Bearer")
    return CallerValue(organisation, claims.person_id, claims.role)


# async: FastAPI runs a plain function dependency in a worker thread, each request.
async def _service(request: Request) -> CaseService:
    service: CaseService = request.app.state.service
    return service


async def _audit(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.audit
    return trail


Caller = Annotated[CallerValue, Depends(_caller)]
Service = Annotated[CaseService, Depends(_service)]
Audit = Annotated[AuditTrail, Depends(_audit)]


def _scope(caller: CallerValue) -> str | None:
    """Whose cases the caller may touch: its own; an admin any; a legal partner none here."""
    organisation = caller.organisation
    if organisation.kind is OrganisationKind.ADMIN:
        return None
    if organisation.kind is OrganisationKind.LEGAL:
        return "\x00no-case-belongs-to-a-legal-partner-here"
    return organisation.id


def _require_change_role(caller: CallerValue) -> None:
    """Refuse a person whose role only reads (checked before the case is looked up, so it
    says nothing about whether the case exists)."""
    if not caller.may_change_cases():
        raise HTTPException(
            403,
            f"The {caller.role} role may read and submit cases and read the indicators, "
            "but not change or erase a case; a caseworker of the organisation can.",
        )


def _etag(version: int) -> str:
    return f'"{version}"'


def _not_found() -> HTTPException:
    return HTTPException(404, "No such case.")


def _conflict(exc: Exception) -> Response:
    return problem_response(409, "Conflict", str(exc))


router = APIRouter(prefix="/v1", tags=["cases"], responses=PROBLEMS)


@router.post(
    "/cases",
    status_code=201,
    response_model=CaseCreated,
    summary="Submit a new case",
    responses={
        403: {"model": Problem, "description": "Only NGOs submit cases"},
        409: {
            "model": Problem,
            "description": "external_ref already used, or Idempotency-Key reused with another body",
        },
        413: {"model": Problem, "description": "Body too large"},
        422: {"model": Problem, "description": "Invalid fields, each named"},
    },
)
async def create_case(
    request: Request,
    caller: Caller,
    service: Service,
    response: Response,
    submission: Annotated[
        CaseSubmission,
        Body(
            openapi_examples={
                "hong_kong_unpaid_wages": example(EXAMPLE_SUBMISSION, "Unpaid wages in Hong Kong")
            }
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Makes retries safe: the same key and body return the "
            "original answer and create nothing new",
        ),
    ] = None,
) -> CaseCreated | Response:
    """Store the case and announce it; routing and the worker's SMS follow from the event."""
    if caller.organisation.kind is not OrganisationKind.NGO:
        return problem_response(403, "Forbidden", "Only NGO organisations submit cases.")
    try:
        case, created = await service.submit(
            submission,
            caller.organisation.id,
            idempotency_key,
            request_hash(await request.json()),
            person_id=caller.person_id,
        )
    except DuplicateExternalRefError as exc:
        return problem_response(409, "Conflict", str(exc), existing_case_id=exc.existing_case_id)
    except IdempotencyConflictError as exc:
        return _conflict(exc)
    response.headers["Location"] = f"/v1/cases/{case.id}"
    response.headers["ETag"] = _etag(case.version)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return CaseCreated(
        id=case.id,
        reference=case.reference,
        external_ref=case.external_ref,
        status=case.status,
        submitted_at=case.submitted_at,
    )


@router.get(
    "/cases",
    response_model=CaseList,
    summary="List your cases, newest first or nearest filing deadline first",
)
async def list_cases(
    caller: Caller,
    service: Service,
    status: CaseStatus | None = None,
    employment_country: Annotated[CountryCode | None, Query()] = None,
    claim_type: ClaimType | None = None,
    external_ref: Annotated[str | None, Query(max_length=100)] = None,
    reference: Annotated[
        str | None,
        Query(
            min_length=8,
            max_length=8,
            pattern=REFERENCE_PATTERN,
            description="The case's reference, e.g. LB-7K3Q9 (exact; any letter case)",
        ),
    ] = None,
    submitted_from: Annotated[DateTimeParam | None, Query()] = None,
    submitted_to: Annotated[DateTimeParam | None, Query()] = None,
    sort: Annotated[
        CaseSort,
        Query(
            description="`submitted`: newest first. `deadline`: nearest filing deadline "
            "first, then the cases without one; ties by id. A cursor pages only its sort."
        ),
    ] = CaseSort.SUBMITTED,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CaseList | Response:
    """Cursor pagination in a stable order: cases added meanwhile never shift a page."""
    filters = CaseFilters(
        status=status.value if status else None,
        employment_country=employment_country,
        claim_type=claim_type.value if claim_type else None,
        external_ref=external_ref,
        reference=reference.upper() if reference else None,
        submitted_from=submitted_from,
        submitted_to=submitted_to,
        sort=sort,
    )
    try:
        page = await service.list_cases(_scope(caller), filters, cursor, limit)
    except CursorError as exc:
        return problem_response(
            422,
            "Invalid request",
            f"cursor is not valid: {exc}",
            errors=validation_errors(
                [{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]
            ),
        )
    return CaseList(
        items=[CaseListItem(**{**vars(i), "claim_types": list(i.claim_types)}) for i in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/cases/{case_id}", response_model=CaseView, summary="Read one of your cases")
async def get_case(
    case_id: str,
    caller: Caller,
    service: Service,
    audit: Audit,
    response: Response,
    reason: Annotated[str | None, Query(max_length=200, description="Why (for the audit)")] = None,
) -> CaseView:
    """The case with its status, referral, consents, notes, documents. Sends an ETag."""
    try:
        case = await service.get(case_id, _scope(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    if case.submission is not None:
        await _record(audit, caller, case_id, "read", PERSONAL_READ, reason)
    response.headers["ETag"] = _etag(case.version)
    return case_view(case)


#: What `ETag` holds and `If-Match` must: the case's version, quoted (weak allowed).
ETAG_PATTERN = r'^(W/)?"[0-9]+"$'


def _patch_schema() -> dict[str, Any]:
    """The merge patch as the handler takes it: only worker, employment (each a partial
    object of the submission's) and claims (the whole list, replaced)."""
    schema = CaseSubmission.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema["$defs"]

    def partial(name: str) -> dict[str, Any]:
        part = {k: v for k, v in defs[name].items() if k != "required"}
        part["description"] = f"Only the fields to change. {part.get('description', '')}"
        return part

    return {
        "type": "object",
        "properties": {
            "worker": partial("Worker"),
            "employment": partial("Employment"),
            "claims": schema["properties"]["claims"],
        },
        "additionalProperties": False,
    }


@router.patch(
    "/cases/{case_id}",
    response_model=CaseView,
    summary="Correct a case's details",
    responses={
        **WRITE_PROBLEMS,
        412: {"model": Problem, "description": "If-Match is stale"},
        428: {"model": Problem, "description": "If-Match is required"},
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": _patch_schema()}}}},
)
async def patch_case(
    case_id: str,
    caller: Caller,
    service: Service,
    audit: Audit,
    response: Response,
    patch: Annotated[
        dict[str, Any],
        Body(
            openapi_examples={
                "new_phone": example(
                    {"worker": {"phone": "+6281298765432"}}, "The worker has a new phone"
                )
            }
        ),
    ],
    if_match: Annotated[
        str | None,
        Header(description="The ETag you read (required: 428 without it)", pattern=ETAG_PATTERN),
    ] = None,
) -> CaseView | Response:
    """JSON merge patch (RFC 7396) of worker, employment and claims, with If-Match."""
    _require_change_role(caller)
    unknown = sorted(set(patch) - {"worker", "employment", "claims"})
    if unknown:
        return problem_response(
            422,
            "Invalid request",
            "Only worker, employment and claims can be corrected here.",
            errors=validation_errors(
                [
                    {"loc": ("body", k), "msg": "cannot be changed here", "type": "immutable"}
                    for k in unknown
                ]
            ),
        )
    if if_match is None:
        return problem_response(428, "Precondition Required", "Send If-Match with the ETag.")
    try:
        version = int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError:
        return problem_response(412, "Precondition Failed", "If-Match is not an ETag of ours.")
    try:
        case = await service.correct(case_id, _require_ngo(caller), version, patch, *_actor(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    except VersionMismatchError as exc:
        return problem_response(412, "Precondition Failed", str(exc))
    except ValidationError as exc:
        return problem_response(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            errors=validation_errors(exc.errors()),
        )
    except CaseStateError as exc:
        return _conflict(exc)
    await _record(audit, caller, case_id, "correct", sorted(patch), None)
    response.headers["ETag"] = _etag(case.version)
    return case_view(case)


def _require_ngo(caller: CallerValue) -> str:
    _require_change_role(caller)
    scope = _scope(caller)
    if scope is None or caller.organisation.kind is not OrganisationKind.NGO:
        # Admins read and erase; changing a case's details is its NGO's job.
        raise _not_found()
    return scope


def _actor(caller: CallerValue) -> tuple[str, str | None]:
    """Who acted, for the timeline: the organisation, and the person if one did."""
    return caller.organisation.id, caller.person_id


async def _record(
    audit: AuditTrail,
    caller: CallerValue,
    case_id: str,
    action: str,
    fields: list[str],
    reason: str | None,
) -> None:
    await audit.record(
        caller.organisation, case_id, action, fields, reason, person_id=caller.person_id
    )


@router.post(
    "/cases/{case_id}/notes",
    status_code=201,
    response_model=NoteView,
    summary="Add an internal note",
    responses=WRITE_PROBLEMS,
)
async def add_note(
    case_id: str, body: NoteIn, caller: Caller, service: Service, audit: Audit
) -> NoteView | Response:
    """Notes stay with the NGO: never shared with partners unless a manifest says so."""
    try:
        _, note = await service.add_note(case_id, _require_ngo(caller), body.text, *_actor(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    await _record(audit, caller, case_id, "add_note", ["notes"], None)
    return NoteView.model_validate(note, from_attributes=True)


@router.post(
    "/cases/{case_id}/documents",
    status_code=201,
    response_model=DocumentView,
    summary="Record a document's metadata",
    responses=WRITE_PROBLEMS,
)
async def add_document(
    case_id: str, body: DocumentIn, caller: Caller, service: Service, audit: Audit
) -> DocumentView | Response:
    """Records kind, file name, sha256, size and where the file is held; not the file."""

    def record(document_id: str, now: datetime) -> DocumentRecord:
        return DocumentRecord(id=document_id, recorded_at=now, **body.model_dump())

    try:
        _, document = await service.add_document(
            case_id, _require_ngo(caller), record, *_actor(caller)
        )
    except CaseNotFoundError:
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    await _record(audit, caller, case_id, "add_document", ["documents"], None)
    return DocumentView.model_validate(document, from_attributes=True)


@router.post(
    "/cases/{case_id}/consents",
    status_code=201,
    response_model=ConsentView,
    summary="Record a consent",
    responses=WRITE_PROBLEMS,
)
async def add_consent(
    case_id: str,
    body: Annotated[
        Consent,
        Body(
            openapi_examples={
                "sharing_with_singapore": example(
                    {**EXAMPLE_SUBMISSION["consent"], "share_with_countries": ["SG"]},
                    "She agrees to her case going to a partner in Singapore too",
                )
            }
        ),
    ],
    caller: Caller,
    service: Service,
    audit: Audit,
) -> ConsentView | Response:
    """Each consent record says what it covers; routing resumes when one covers it."""
    try:
        _, record = await service.add_consent(case_id, _require_ngo(caller), body, *_actor(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    await _record(audit, caller, case_id, "add_consent", ["consents"], None)
    return ConsentView(
        id=record.id,
        active=record.active,
        recorded_at=record.recorded_at,
        recorded_by=record.recorded_by,
        withdrawn_at=None,
        consent=record.consent,
    )


@router.post(
    "/cases/{case_id}/consents/{consent_id}/withdraw",
    response_model=CaseView,
    summary="Withdraw a consent",
    responses=WRITE_PROBLEMS,
)
async def withdraw_consent(
    case_id: str, consent_id: str, caller: Caller, service: Service, audit: Audit
) -> CaseView | Response:
    """Referrals the consent allowed are withdrawn and their partners told."""
    try:
        case = await service.withdraw_consent(
            case_id, _require_ngo(caller), consent_id, *_actor(caller)
        )
    except (CaseNotFoundError, KeyError):
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    await _record(audit, caller, case_id, "withdraw_consent", ["consents"], None)
    return case_view(case)


@router.post(
    "/cases/{case_id}/sms-preference",
    response_model=CaseView,
    summary="Opt the worker out of SMS, or back in",
    responses=WRITE_PROBLEMS,
)
async def sms_preference(
    case_id: str, body: SmsPreferenceIn, caller: Caller, service: Service
) -> CaseView | Response:
    """For routes where the worker cannot reply STOP/BERHENTI herself."""
    try:
        case = await service.set_sms_preference(
            case_id, _require_ngo(caller), body.opted_out, *_actor(caller)
        )
    except CaseNotFoundError:
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    return case_view(case)


@router.post(
    "/cases/{case_id}/close",
    response_model=CaseView,
    summary="Close a case",
    responses=WRITE_PROBLEMS,
)
async def close_case(
    case_id: str, body: CloseIn, caller: Caller, service: Service
) -> CaseView | Response:
    """Record the outcome and the amounts recovered per currency."""
    try:
        case = await service.close(
            case_id, _require_ngo(caller), body.outcome, body.amounts_recovered, *_actor(caller)
        )
    except CaseNotFoundError:
        raise _not_found() from None
    except CaseStateError as exc:
        return _conflict(exc)
    return case_view(case)


@router.post(
    "/cases/{case_id}/erase",
    response_model=CaseView,
    summary="Erase the worker's personal data everywhere (UU 27/2022)",
    responses=ROLE_PROBLEM,
)
async def erase_case(case_id: str, caller: Caller, service: Service, audit: Audit) -> CaseView:
    """Destroys the case's key: every copy, in every service and in Kafka, becomes noise."""
    _require_change_role(caller)
    scope = _scope(caller)
    if caller.organisation.kind is OrganisationKind.LEGAL:
        raise _not_found()
    try:
        case = await service.erase(case_id, scope, *_actor(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    await _record(audit, caller, case_id, "erase", PERSONAL_READ, None)
    return case_view(case)


@router.get(
    "/cases/{case_id}/timeline",
    response_model=Timeline,
    summary="Everything that happened to the case, across services",
)
async def timeline(case_id: str, caller: Caller, service: Service) -> Timeline:
    """In order of time: submission, routing, handoff, SMS, corrections, closing."""
    try:
        case = await service.get(case_id, _scope(caller))
    except CaseNotFoundError:
        raise _not_found() from None
    entries = sorted(case.timeline, key=lambda e: e.at)
    return Timeline(
        case_id=case.id,
        entries=[TimelineEntryView.model_validate(e, from_attributes=True) for e in entries],
    )
