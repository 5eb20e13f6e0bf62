"""Caseworkers' pages: the case list, a new case, one case, and its consent sheet.

Every read and write goes through intake's API as the signed-in person, so scoping,
validation, idempotency and the audit trail stay in intake.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lintas_console.adapters.services_api import ApiProblemError, ServiceUnavailableError
from lintas_console.domain.people import Role
from lintas_console.entrypoints.forms import aware, field_messages, flatten, nest
from lintas_console.entrypoints.web import (
    Console,
    Ctx,
    PageNotFoundError,
    SignedIn,
    Visitor,
    allow,
    checked_form,
    redirect,
    render,
)

router = APIRouter(include_in_schema=False)
CASEWORKERS = (Role.CASEWORKER, Role.ORG_ADMIN, Role.ADMIN)
READERS = (*CASEWORKERS, Role.PROGRAMME)
LIST_FILTERS = ("status", "employment_country", "claim_type", "cursor")
MULTI_VALUED = frozenset({"consent.purposes", "consent.share_with_countries"})


async def _case(ctx: Console, visitor: Visitor, case_id: str) -> dict[str, Any]:
    try:
        answer = await ctx.intake.call(visitor.claims, "GET", f"/v1/cases/{case_id}")
    except ApiProblemError as exc:
        if exc.status in (404, 422):
            raise PageNotFoundError from None
        raise
    data: dict[str, Any] = answer.data
    return data


@router.get("/cases")
async def case_list(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The organisation's cases: filters, search by reference or external ref, nearest
    filing deadline first."""
    allow(visitor, READERS)
    query = {k: request.query_params.get(k) for k in LIST_FILTERS}
    search = (request.query_params.get("q") or "").strip()
    params: dict[str, Any] = {**query, "sort": "deadline", "limit": 50}
    if search.upper().startswith("LB-"):
        params["reference"] = search.upper()
    elif search:
        params["external_ref"] = search
    answer = await ctx.intake.call(visitor.claims, "GET", "/v1/cases", params=params)
    return render(
        ctx,
        request,
        "cases/list.html",
        visitor=visitor,
        page=answer.data,
        filters=query,
        search=search,
    )


def _blank_case(claims: int) -> dict[str, str]:
    values = {
        "worker.preferred_language": "id",
        "worker.current_country": "ID",
        "consent.language": "id",
        "consent.channel": "in_person",
        "consent.purposes": "legal_referral,sms_updates",
        "consent.timezone": "Asia/Jakarta",
    }
    for index in range(claims):
        values[f"claims[{index}].claimants"] = "1"
    return values


@router.get("/cases/new")
async def new_case_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The whole case on one form; kept as a draft in the browser while typed."""
    allow(visitor, CASEWORKERS)
    return render(
        ctx,
        request,
        "cases/new.html",
        visitor=visitor,
        values=_blank_case(1),
        claim_count=1,
        errors={},
        idempotency_key=str(uuid.uuid4()),
    )


def submission_from_form(pairs: list[tuple[str, str]], visitor: Visitor) -> dict[str, Any]:
    """The API body a posted new-case form stands for."""
    body = nest(pairs, MULTI_VALUED)
    consent = body.setdefault("consent", {})
    zone = consent.pop("timezone", "Asia/Jakarta")
    if "given_at" in consent:
        consent["given_at"] = aware(consent["given_at"], zone) or consent["given_at"]
    consent.setdefault("text_version", f"lintas-consent-{consent.get('language', 'id')}-1")
    consent["taken_by"] = visitor.person.id
    for claim in body.get("claims", []):
        amount = claim.get("amount")
        if isinstance(amount, dict) and "value" not in amount:
            claim.pop("amount")  # a currency alone is the select's default, not an amount
    return body


@router.post("/cases/new")
async def create_case(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Submit through intake with the form's Idempotency-Key: a second submit of the same
    form answers with the same case."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    values = {k: v for k, v in pairs}
    for name in MULTI_VALUED:
        values[name] = ",".join(v for k, v in pairs if k == name)
    claim_count = max(1, int(str(form.get("claim_count", "1")) or 1))
    key = str(form.get("idempotency_key") or uuid.uuid4())
    context: dict[str, Any] = {"values": values, "idempotency_key": key, "errors": {}}
    if form.get("action") == "add_claim":
        return render(
            ctx,
            request,
            "cases/new.html",
            visitor=visitor,
            claim_count=min(claim_count + 1, 20),
            **context,
        )
    try:
        answer = await ctx.intake.call(
            visitor.claims,
            "POST",
            "/v1/cases",
            json=submission_from_form(pairs, visitor),
            headers={"Idempotency-Key": key},
        )
    except ServiceUnavailableError:
        return render(
            ctx,
            request,
            "cases/new.html",
            visitor=visitor,
            claim_count=claim_count,
            status=503,
            unavailable=True,
            **context,
        )
    except ApiProblemError as exc:
        errors = field_messages(exc.errors, ctx.translator.gettext)
        existing = exc.body.get("existing_case_id") if exc.status == 409 else None
        return render(
            ctx,
            request,
            "cases/new.html",
            visitor=visitor,
            claim_count=claim_count,
            status=exc.status if exc.status in (409, 422) else 400,
            existing_case_id=existing,
            refused=exc,
            **{**context, "errors": errors},
        )
    return redirect(f"/cases/{answer.data['id']}?created=1")


async def _names(ctx: Console, ids: list[str | None]) -> dict[str, str]:
    return await ctx.accounts.people.names(sorted({i for i in ids if i}))


@router.get("/cases/{case_id}")
async def case_page(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """Status and why, the referral with forum and deadline, timeline, notes, documents,
    consents, SMS, close and erase."""
    allow(visitor, READERS)
    case = await _case(ctx, visitor, case_id)
    timeline = await ctx.intake.call(visitor.claims, "GET", f"/v1/cases/{case_id}/timeline")
    entries = timeline.data["entries"]
    names = await _names(ctx, [e.get("person_id") for e in entries])
    return render(
        ctx,
        request,
        "cases/case.html",
        visitor=visitor,
        case=case,
        entries=entries,
        names=names,
        today=datetime.now(UTC).date().isoformat(),
        created=request.query_params.get("created") == "1",
        done=request.query_params.get("done"),
        values={},
        errors={},
    )


async def _case_command(
    request: Request,
    ctx: Console,
    visitor: Visitor,
    case_id: str,
    path: str,
    body: dict[str, Any],
    done: str,
) -> Response:
    """Post one change to intake; on refusal show the case again with the errors and
    what was typed."""
    try:
        await ctx.intake.call(visitor.claims, "POST", f"/v1/cases/{case_id}{path}", json=body)
    except (ApiProblemError, ServiceUnavailableError) as exc:
        if isinstance(exc, ApiProblemError) and exc.status == 404:
            raise PageNotFoundError from None
        case = await _case(ctx, visitor, case_id)
        timeline = await ctx.intake.call(visitor.claims, "GET", f"/v1/cases/{case_id}/timeline")
        entries = timeline.data["entries"]
        return render(
            ctx,
            request,
            "cases/case.html",
            visitor=visitor,
            case=case,
            entries=entries,
            names=await _names(ctx, [e.get("person_id") for e in entries]),
            status=503 if isinstance(exc, ServiceUnavailableError) else exc.status,
            unavailable=isinstance(exc, ServiceUnavailableError),
            refused=exc if isinstance(exc, ApiProblemError) else None,
            errors=field_messages(exc.errors, ctx.translator.gettext)
            if isinstance(exc, ApiProblemError)
            else {},
            values=flatten(body),
            section=done,
        )
    return redirect(f"/cases/{case_id}?done={done}#{done}")


@router.post("/cases/{case_id}/notes")
async def add_note(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """An internal note."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    return await _case_command(
        request, ctx, visitor, case_id, "/notes", {"text": str(form.get("text", ""))}, "notes"
    )


@router.post("/cases/{case_id}/documents")
async def add_document(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """A document's record (the file stays where the NGO keeps it)."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    body: dict[str, Any] = nest([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    if str(body.get("size", "")).isdigit():
        body["size"] = int(body["size"])
    return await _case_command(request, ctx, visitor, case_id, "/documents", body, "documents")


@router.post("/cases/{case_id}/consents")
async def add_consent(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """A new consent record (e.g. to share with another country)."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    body = submission_from_form(pairs, visitor).get("consent", {})
    return await _case_command(request, ctx, visitor, case_id, "/consents", body, "consents")


@router.post("/cases/{case_id}/consents/{consent_id}/withdraw")
async def withdraw_consent(
    request: Request, ctx: Ctx, visitor: SignedIn, case_id: str, consent_id: str
) -> Response:
    """The worker withdrew a consent."""
    allow(visitor, CASEWORKERS)
    await checked_form(request, visitor)
    return await _case_command(
        request, ctx, visitor, case_id, f"/consents/{consent_id}/withdraw", {}, "consents"
    )


@router.post("/cases/{case_id}/sms")
async def sms_preference(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """Stop (or restart) SMS to the worker."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    body = {"opted_out": form.get("opted_out") == "true"}
    return await _case_command(request, ctx, visitor, case_id, "/sms-preference", body, "sms")


@router.post("/cases/{case_id}/close")
async def close_case(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """Close with the outcome and any amounts recovered."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    body = nest([(k, v) for k, v in form.multi_items() if isinstance(v, str)])
    body["amounts_recovered"] = [
        a for a in body.get("amounts_recovered", []) if isinstance(a, dict) and a.get("value")
    ]
    return await _case_command(request, ctx, visitor, case_id, "/close", body, "close")


@router.post("/cases/{case_id}/erase")
async def erase_case(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """Erase the worker's data, once the case's reference is typed to confirm."""
    allow(visitor, CASEWORKERS)
    form = await checked_form(request, visitor)
    case = await _case(ctx, visitor, case_id)
    if str(form.get("confirm", "")).strip().upper() != case["reference"]:
        timeline = await ctx.intake.call(visitor.claims, "GET", f"/v1/cases/{case_id}/timeline")
        return render(
            ctx,
            request,
            "cases/case.html",
            visitor=visitor,
            case=case,
            entries=timeline.data["entries"],
            names={},
            status=422,
            errors={
                "confirm": ctx.translator.gettext("Type the case reference exactly to confirm.")
            },
            values={},
            section="erase",
        )
    return await _case_command(request, ctx, visitor, case_id, "/erase", {}, "erase")


@router.get("/cases/{case_id}/consent-sheet")
async def consent_sheet(request: Request, ctx: Ctx, visitor: SignedIn, case_id: str) -> Response:
    """A printable consent sheet in the worker's language, for a paper signature."""
    allow(visitor, CASEWORKERS)
    case = await _case(ctx, visitor, case_id)
    submission = case.get("case") or {}
    worker_language = (submission.get("worker") or {}).get("preferred_language", "id")
    ctx.translator.use(worker_language if worker_language in ("id", "en") else "id")
    return render(ctx, request, "cases/consent_sheet.html", visitor=visitor, case=case)
