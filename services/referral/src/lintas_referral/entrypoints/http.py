"""The legal partner's referral API under /v1.

Callers: a system with the `X-API-Key` of a legal organisation, or a lawyer working in
the console with its short-lived token (`Authorization: Bearer`, see
`lintas_shared.person_tokens`; other roles answer 403). A person's id goes into the
referral's history, its events and the audit trail.

A partner sees only the referrals offered to it, and of the case only the fields its
handoff shares; another partner's referral id answers 404.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.http import FieldError, Problem, problem_response
from lintas_shared.http_auth import (
    api_key_scheme,
    authenticated,
    person_claims,
    person_token_scheme,
    unauthorised,
)
from lintas_shared.http_params import DateParam
from lintas_shared.person_tokens import Role
from lintas_shared.security import hash_api_key
from lintas_shared.values import Money
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from lintas_referral import handlers, webhooks
from lintas_referral.adapters.audit import MongoAuditTrail
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.webhook_deliveries import MongoWebhookDeliveries
from lintas_referral.domain.case_routing import (
    CaseRouting,
    Outcome,
    Progress,
    Referral,
    ReferralNotFoundError,
    ReferralStatus,
    TransitionError,
)
from lintas_referral.domain.forums import ClaimRouting
from lintas_referral.domain.handoff import CONTENT_FIELD, minimised_view, referral_key
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.webhooks import (
    DEFAULT_ROTATION_OVERLAP,
    DEFAULT_SCHEME,
    MAX_ROTATION_OVERLAP,
    SignatureScheme,
    WebhookUrlError,
    url_pattern,
)
from lintas_referral.handlers import Referrals
from lintas_referral.webhooks import Webhooks

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "model": Problem,
        "description": "Missing or unknown API key; or a person token that is invalid, "
        "expired, meant for another service or of an unknown partner",
    },
    403: {"model": Problem, "description": "A person token whose role is not lawyer"},
    404: {"model": Problem, "description": "No such referral for this partner"},
}
NOT_FOUND = "No such referral."
NO_KEY = "A valid X-API-Key header of a legal partner is required."


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeclineRequest(_Body):
    """Why the partner declines."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "No capacity for employment claims this month."}]
        },
    )

    reason: str = Field(min_length=1, max_length=1000)


class ProgressRequest(_Body):
    """Progress on an accepted referral."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"filed_at_forum": True, "hearing_on": "2027-01-15", "documents_needed": False}
            ]
        },
    )

    filed_at_forum: StrictBool = False
    hearing_on: DateParam | None = None
    documents_needed: StrictBool = False
    note: str | None = Field(default=None, max_length=2000)


class CloseRequest(_Body):
    """The outcome of a referral."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outcome": "settled",
                    "amounts_recovered": [{"currency": "HKD", "value": "12400.00"}],
                }
            ]
        },
    )

    outcome: Outcome
    amounts_recovered: list[Money] = Field(default_factory=list)


class HandOnRequest(_Body):
    """Hand some claims on to another partner (keeps the history)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to_partner_id": "org-demo-legal-sg",
                    "claim_indexes": [0],
                    "reason": "The claim belongs in Singapore.",
                }
            ]
        },
    )

    to_partner_id: str = Field(min_length=1)
    claim_indexes: list[int] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1000)


class HandoffView(BaseModel):
    """What was shared, why, and under which consent."""

    legal_basis: str
    purpose: str
    recipient_organisation_id: str
    recipient_country: str
    consent_id: str
    fields: list[str]


class HistoryEntry(BaseModel):
    """One step in a referral's life, as a partner sees it (a partner's words opened)."""

    at: datetime
    status: str
    reason: str | None = Field(
        default=None,
        description="Why: the system's words (e.g. not accepted in time), or a partner's "
        "own (your decline's reason; on a handed-on offer, the reason of the partner who "
        "handed it on), kept sealed with the case's key and opened for you here. A "
        "partner's words are left out of the list of referrals, and read `(erased)` once "
        "the worker's data was erased",
    )
    person_id: str | None = Field(
        default=None,
        description="The person who took this step (a pseudonymous id), when one did "
        "through the console; null for an API key or the service itself",
    )


class ReferralSummary(BaseModel):
    """A referral as listed: no personal data."""

    id: str
    case_id: str
    case_reference: str
    status: ReferralStatus
    country: str
    offered_at: datetime
    expires_at: datetime
    claims: list[ClaimRouting]
    history: list[HistoryEntry]
    handed_on_from: str | None


class ReferralView(ReferralSummary):
    """A referral with the case's shared fields (exactly the handoff's manifest)."""

    handoff: HandoffView
    shared: dict[str, Any] | None = Field(
        description="The case, minimised to handoff.fields; null once the data was erased, "
        "the referral was declined, expired or withdrawn, or closed longer ago than "
        "the retention (see shared_until)"
    )
    erased: bool = False
    outcome: Outcome | None = Field(default=None, description="Set once you closed it")
    amounts_recovered: list[Money] = Field(default_factory=list)
    shared_until: datetime | None = Field(
        default=None,
        description="For a closed referral: when its shared fields and content key stop "
        "being available to you (only the outcome stays)",
    )


NoteOpener = Callable[[str], str | None]


def _no_notes(token: str) -> str | None:
    return None


def _summary(routing: CaseRouting, r: Referral, notes: NoteOpener = _no_notes) -> dict[str, Any]:
    return {
        "id": r.id,
        "case_id": routing.case_id,
        "case_reference": routing.reference,
        "status": r.status,
        "country": r.jurisdiction,
        "offered_at": r.offered_at,
        "expires_at": r.expires_at,
        "claims": [c for c in routing.claims if c.claim_index in r.claim_indexes],
        "history": [
            HistoryEntry(
                at=h.at,
                status=h.status,
                reason=h.reason if h.note is None else notes(h.note),
                person_id=h.person_id,
            )
            for h in r.history
        ],
        "handed_on_from": r.handed_on_from,
    }


async def _notes(ctx: Referrals, routing: CaseRouting) -> NoteOpener:
    """Opens the partners' sealed text of this case (`(erased)` once its key is gone)."""
    try:
        key: DataKey | None = await _case_key(ctx, routing.case_id)
    except CaseKeyMissingError:
        key = None
    return partial(handlers.open_note, key)


@dataclass(frozen=True)
class PartnerCaller:
    """Who is calling: a partner by its API key (a system; no person), or one of its
    lawyers through the console's token."""

    partner: Partner
    person_id: str | None = None
    role: Role | None = None

    @property
    def id(self) -> str:
        """The partner's id (what tenancy is decided by)."""
        return self.partner.id


API_KEY = api_key_scheme("Your organisation's API key (systems)")
PERSON_TOKEN = person_token_scheme(
    "A lawyer's short-lived token, signed by the Lintas console "
    "(EdDSA; audience `lintas-referral`; claims `sub` = person, `org`, `role` = lawyer)"
)


async def _caller(
    request: Request,
    api_key: Annotated[str | None, Security(API_KEY)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(PERSON_TOKEN)] = None,
) -> PartnerCaller:
    """The partner behind an API key, or the lawyer (and partner) behind a console
    token. An API key, when sent, is what counts."""
    directory: MongoPartnerDirectory = request.app.state.partners
    if api_key:
        pepper: str = request.app.state.api_key_pepper
        partner = await directory.by_api_key_hash(hash_api_key(api_key, pepper))
        if partner is None:
            raise unauthorised("A valid X-API-Key header of a legal partner is required.", "ApiKey")
        authenticated(request)
        return PartnerCaller(partner)
    if bearer is None:
        raise unauthorised("A valid X-API-Key header of a legal partner is required.", "ApiKey")
    claims = person_claims(request, bearer)
    found = await directory.calling(claims.organisation_id)
    if found is None:
        raise unauthorised("The bearer token's organisation is not a partner here.", "Bearer")
    if claims.role is not Role.LAWYER:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"The referral API is for lawyers; the {claims.role} role cannot use it.",
        )
    return PartnerCaller(found, claims.person_id, claims.role)


# async: FastAPI runs a plain function dependency in a worker thread, each request.
async def _ctx(request: Request) -> Referrals:
    ctx: Referrals = request.app.state.referrals
    return ctx


Caller = Annotated[PartnerCaller, Depends(_caller)]
Ctx = Annotated[Referrals, Depends(_ctx)]
router = APIRouter(prefix="/v1", tags=["referrals"], responses=PROBLEMS)


async def _mine(
    ctx: Referrals, referral_id: str, partner: PartnerCaller
) -> tuple[CaseRouting, Referral]:
    routing = await ctx.routings.by_referral(referral_id)
    try:
        if routing is None:
            raise ReferralNotFoundError(referral_id)
        return routing, routing.referral(referral_id, partner.id)
    except ReferralNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


@router.get("/referrals", response_model=list[ReferralSummary], summary="Your referrals")
async def list_referrals(
    caller: Caller,
    ctx: Ctx,
    request: Request,
    status_: Annotated[ReferralStatus | None, Query(alias="status")] = None,
) -> list[dict[str, Any]]:
    """Referrals offered to you, optionally of one status, without personal data."""
    routings = await ctx.routings.for_partner(caller.id)
    return [
        _summary(routing, r)
        for routing in routings
        for r in routing.referrals
        if r.partner_organisation_id == caller.id and status_ in (None, r.status)
    ]


@router.get("/referrals/{referral_id}", response_model=ReferralView, summary="One referral")
async def get_referral(
    referral_id: str, caller: Caller, ctx: Ctx, request: Request
) -> dict[str, Any]:
    """The referral with forum, deadline and exactly the fields its handoff shares."""
    routing, r = await _mine(ctx, referral_id, caller)
    view = {
        **_summary(routing, r, await _notes(ctx, routing)),
        "handoff": r.handoff.model_dump(),
        "erased": routing.erased,
        "outcome": r.outcome,
        "amounts_recovered": list(r.amounts_recovered),
    }
    view["shared"] = None
    view["shared_until"] = r.shared_until(ctx.policy.closed_view_retention)
    # Personal data only while the referral is the partner's to work on, or for a while
    # after it closed it: a declined, expired or withdrawn offer no longer opens the case.
    if not routing.erased and r.shares_personal_data(ctx.clock(), ctx.policy.closed_view_retention):
        try:
            key = await _case_key(ctx, routing.case_id)
            view["shared"] = minimised_view(
                routing.case, r.handoff.fields, r.claim_indexes, key.decrypt
            )
        except CaseKeyMissingError:
            view["erased"] = True
        else:
            audit: MongoAuditTrail = request.app.state.audit
            await audit.record_access(
                case_id=routing.case_id,
                referral_id=r.id,
                organisation_id=caller.id,
                fields=r.handoff.fields,
                at=ctx.clock(),
                person_id=caller.person_id,
            )
    return view


async def _case_key(ctx: Referrals, case_id: str) -> DataKey:
    # From the vault, not memory: a partner is refused the moment the case is erased.
    if ctx.keys is None:
        raise CaseKeyMissingError(case_id)
    return await ctx.keys.current(case_id)


class ContentKey(BaseModel):
    """How to open the `content` of this referral's `referral offered` event."""

    key: str = Field(description="AES-256-GCM key, base64url")
    associated_data: str = Field(description="'<case_id>\\x1f" + CONTENT_FIELD + "'")
    format: str = "content = 'enc:v1:' + base64url(12-byte nonce + ciphertext); JSON inside"


@router.get(
    "/referrals/{referral_id}/content-key",
    response_model=ContentKey,
    summary="The key to this referral's sealed event content",
    responses={410: {"model": Problem, "description": "Erased, or no longer shared with you"}},
)
async def content_key(referral_id: str, caller: Caller, ctx: Ctx, request: Request) -> Any:
    """For partners consuming lintas.referrals.v1: opens only this referral's content."""
    routing, r = await _mine(ctx, referral_id, caller)
    if not r.shares_personal_data(ctx.clock(), ctx.policy.closed_view_retention):
        return problem_response(410, "Gone", f"The referral is {r.status}; it is no longer shared.")
    try:
        key = referral_key(await _case_key(ctx, routing.case_id), r.id)
    except CaseKeyMissingError:
        return problem_response(410, "Gone", "The worker's data was erased.")
    audit: MongoAuditTrail = request.app.state.audit
    await audit.record_access(
        case_id=routing.case_id,
        referral_id=r.id,
        organisation_id=caller.id,
        fields=[CONTENT_FIELD, *r.handoff.fields],
        at=ctx.clock(),
        person_id=caller.person_id,
    )
    return ContentKey(
        key=base64.urlsafe_b64encode(key.key).decode(),
        associated_data=f"{routing.case_id}\x1f{CONTENT_FIELD}",
    )


async def _audit_reader(
    request: Request,
    api_key: Annotated[str | None, Security(API_KEY)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(PERSON_TOKEN)] = None,
    x_operator_token: Annotated[str | None, Header(description="The operator token")] = None,
) -> None:
    """Lintas admins only, as intake's `/v1/audit`: a console token with the `admin` role
    (only admins grant it), or the operator token. A partner (key or lawyer) gets 404,
    the programme role 403, anyone unknown 401."""
    expected: str = request.app.state.operator_token
    if x_operator_token and hmac.compare_digest(x_operator_token, expected):
        return
    if bearer is not None and not api_key:
        claims = person_claims(request, bearer)
        if claims.role is Role.ADMIN:
            return
        if claims.role is Role.PROGRAMME:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "The programme role does not read the audit trail."
            )
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found.")
    await _caller(request, api_key, None)  # 401 unless a partner's key
    raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found.")


@router.get(
    "/audit",
    tags=["audit"],
    summary="Partner reads of a case's personal data (admins)",
    dependencies=[Depends(_audit_reader)],
    responses={
        403: {"model": Problem, "description": "A person token of the programme role"},
        404: {"model": Problem, "description": "Not an admin: a partner's key or lawyer"},
    },
)
async def audit_entries(
    request: Request, case_id: Annotated[str, Query(max_length=100)]
) -> list[dict[str, Any]]:
    """Every time a partner opened the case's personal data (the referral view, or the
    content key of its sealed event): which partner, which person (when a lawyer acted
    through the console), which referral, which fields, when. Intake's `/v1/audit` has
    the case's reads and changes inside Lintas."""
    audit: MongoAuditTrail = request.app.state.audit
    return [{k: v for k, v in e.items() if k != "_id"} for e in await audit.for_case(case_id)]


def _conflict(exc: TransitionError) -> JSONResponse:
    return problem_response(409, "Conflict", str(exc))


async def _command(
    ctx: Referrals,
    referral_id: str,
    caller: PartnerCaller,
    run: Callable[[], Awaitable[CaseRouting]],
) -> dict[str, Any] | JSONResponse:
    await _mine(ctx, referral_id, caller)
    try:
        routing = await run()
    except ReferralNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    except TransitionError as exc:
        return _conflict(exc)
    return _summary(routing, routing.referral(referral_id), await _notes(ctx, routing))


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "Not allowed in the referral's status"}
}


@router.post("/referrals/{referral_id}/accept", response_model=ReferralSummary, responses=CONFLICT)
async def accept_referral(referral_id: str, caller: Caller, ctx: Ctx) -> Any:
    """Accept an offered referral."""
    return await _command(
        ctx,
        referral_id,
        caller,
        lambda: handlers.accept(ctx, referral_id, caller.id, caller.person_id),
    )


@router.post("/referrals/{referral_id}/decline", response_model=ReferralSummary, responses=CONFLICT)
async def decline_referral(referral_id: str, body: DeclineRequest, caller: Caller, ctx: Ctx) -> Any:
    """Decline an offered referral, saying why; the next partner is offered it."""
    return await _command(
        ctx,
        referral_id,
        caller,
        lambda: handlers.decline(ctx, referral_id, caller.id, body.reason, caller.person_id),
    )


@router.post(
    "/referrals/{referral_id}/progress", response_model=ReferralSummary, responses=CONFLICT
)
async def report_progress(referral_id: str, body: ProgressRequest, caller: Caller, ctx: Ctx) -> Any:
    """Report progress: filed at the forum, a hearing date, documents needed."""
    report = Progress(**body.model_dump(), at=ctx.clock())
    return await _command(
        ctx,
        referral_id,
        caller,
        lambda: handlers.progress(ctx, referral_id, caller.id, report, caller.person_id),
    )


@router.post("/referrals/{referral_id}/close", response_model=ReferralSummary, responses=CONFLICT)
async def close_referral(referral_id: str, body: CloseRequest, caller: Caller, ctx: Ctx) -> Any:
    """Close the referral with its outcome and the amounts recovered."""
    return await _command(
        ctx,
        referral_id,
        caller,
        lambda: handlers.close(
            ctx,
            referral_id,
            caller.id,
            body.outcome,
            body.amounts_recovered,
            caller.person_id,
        ),
    )


@router.post("/referrals/{referral_id}/hand-on", response_model=ReferralSummary, responses=CONFLICT)
async def hand_on_referral(referral_id: str, body: HandOnRequest, caller: Caller, ctx: Ctx) -> Any:
    """Hand claims on to another partner (e.g. back to Indonesia); the history is kept.

    Answers the new referral.
    """
    await _mine(ctx, referral_id, caller)
    try:
        routing = await handlers.hand_on(
            ctx,
            referral_id,
            caller.id,
            body.to_partner_id,
            body.claim_indexes,
            body.reason,
            caller.person_id,
        )
    except TransitionError as exc:
        return _conflict(exc)
    return _summary(routing, routing.referrals[-1], await _notes(ctx, routing))


# --- webhooks --------------------------------------------------------------------------------


class WebhookRequest(_Body):
    """Where to POST referral events, and how to sign them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://partner.example.org/lintas/referrals"},
                {"url": "https://partner.example.org/lintas/referrals", "signature_scheme": "both"},
            ]
        },
    )

    url: str = Field(
        max_length=2000,
        description="https:// (http://127.0.0.1 too on a dev stack). The host must "
        "resolve only to public addresses: loopback, link-local, private, shared (CGNAT), "
        "multicast, unspecified, reserved and IPv6 unique-local addresses are refused, "
        "here and again at each delivery.",
        json_schema_extra={"pattern": url_pattern(False)},
    )
    signature_scheme: SignatureScheme = Field(
        default=DEFAULT_SCHEME,
        description="`standard` (the default): Standard Webhooks headers `webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`. `both`: those and the deprecated "
        "`X-Lintas-Signature`, to move a receiver over without a gap. `lintas-v1`: the "
        "deprecated header alone. `both` and `lintas-v1` are kept for one release.",
    )


class WebhookRegistered(BaseModel):
    """The registration; the secret is shown only now."""

    url: str
    signature_scheme: SignatureScheme
    secret: str = Field(
        description="`whsec_` and base64: verify `webhook-signature` with it (any Standard "
        "Webhooks library takes it as it is); shown only once"
    )


class DeliveryAttempt(BaseModel):
    """One attempt to deliver (or a redelivery request)."""

    at: datetime
    status_class: str | None = Field(
        default=None,
        description="Your endpoint's answer, as a class only: `2xx`, `3xx`, `4xx`, `5xx`, "
        "`no answer` (no connection or no HTTP answer), or `address refused` (your host "
        "resolved to an address webhooks are not sent to).",
        examples=["2xx", "no answer"],
    )
    ok: bool | None = None
    redelivery_requested: bool | None = None


def _attempt(doc: dict[str, Any]) -> DeliveryAttempt:
    """What a partner sees of an attempt: never a status code or an error text (they
    told a closed port from an open one). Older attempts stored both."""
    outcome = doc.get("status_class")
    if outcome is None and "ok" in doc:
        outcome = webhooks.status_class(doc.get("status_code"))
    return DeliveryAttempt(
        at=doc["at"],
        status_class=outcome,
        ok=doc.get("ok"),
        redelivery_requested=doc.get("redelivery_requested"),
    )


class Delivery(BaseModel):
    """A webhook delivery of one event, with its attempts."""

    id: str
    event_id: str
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    created_at: datetime
    next_attempt_at: datetime | None
    log: list[DeliveryAttempt]


async def _hooks(request: Request) -> Webhooks:
    hooks: Webhooks = request.app.state.webhooks
    return hooks


Hooks = Annotated[Webhooks, Depends(_hooks)]


@router.put(
    "/webhook",
    response_model=WebhookRegistered,
    tags=["webhooks"],
    summary="Register your webhook URL",
    responses={422: {"model": Problem, "description": "URL not allowed, field named"}},
)
async def register_webhook(body: WebhookRequest, caller: Caller, hooks: Hooks) -> Any:
    """Register (or replace) the URL that receives your referral events, signed, with a
    new secret. Events from the next one on are delivered to it.

    Deliveries follow the Standard Webhooks specification: each POST carries
    `webhook-id` (the same on every retry of one delivery: deduplicate on it),
    `webhook-timestamp` (unix seconds) and `webhook-signature`
    (`v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`, keyed with the base64 part
    of the `whsec_` secret), so a Standard Webhooks library verifies it. Refuse a
    timestamp more than 5 minutes from your clock. The body is the event as a CloudEvent
    in structured mode (`Content-Type: application/cloudevents+json`), less a declined
    event's `note` (your own reason, sealed with a key partners never get; the referral
    view shows it to you).

    `signature_scheme` `both` or `lintas-v1` also (or only) sends the deprecated
    `X-Lintas-Signature: t=<unix>,v1=<hex HMAC-SHA256 over "<t>.<body>">` (keyed with the
    whole secret string), for one more release.
    """
    try:
        secret = await webhooks.register(hooks, caller.id, body.url, body.signature_scheme)
    except WebhookUrlError as exc:
        return problem_response(
            422,
            "Invalid request",
            "One or more fields are invalid.",
            errors=[FieldError(field="url", message=str(exc), type="value_error")],
        )
    return WebhookRegistered(
        url=body.url.removesuffix("\n"), signature_scheme=body.signature_scheme, secret=secret
    )


class WebhookRotation(_Body):
    """How long the old secret keeps signing alongside the new one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    overlap_hours: float = Field(
        default=DEFAULT_ROTATION_OVERLAP.total_seconds() / 3600,
        strict=True,  # a number, not `true` taken as 1
        ge=0,
        le=MAX_ROTATION_OVERLAP.total_seconds() / 3600,
        description="Hours during which deliveries are signed with both the old and the new "
        "secret (0: the new one only, at once). At most 168 (7 days).",
    )


class WebhookSecretRotated(BaseModel):
    """The new secret (shown only now) and the end of the overlap window."""

    url: str
    signature_scheme: SignatureScheme
    secret: str = Field(description="The new `whsec_` secret; shown only once")
    previous_secret_valid_until: datetime = Field(
        description="Until then each delivery carries a signature with the old secret too "
        "(two space-separated `v1,` entries in `webhook-signature`, two `v1=` parts in "
        "`X-Lintas-Signature`); after it, only the new secret signs."
    )


@router.post(
    "/webhook/rotate-secret",
    response_model=WebhookSecretRotated,
    tags=["webhooks"],
    summary="Rotate your webhook signing secret, with an overlap window",
    responses={404: {"model": Problem, "description": "No webhook is registered"}},
)
async def rotate_webhook_secret(body: WebhookRotation, caller: Caller, hooks: Hooks) -> Any:
    """Replace the signing secret of your webhook without a gap: from now on deliveries
    are signed with the new secret, and with the old one too until
    `previous_secret_valid_until` (`overlap_hours` from now). Verify with either secret
    meanwhile (accept a delivery when any of its signatures matches), move your receiver
    to the new one, and the old one stops signing at the end of the window. Rotating
    again during a window ends the earlier window at once (only one old secret signs).
    """
    rotated = await webhooks.rotate_secret(hooks, caller.id, timedelta(hours=body.overlap_hours))
    if rotated is None:
        return problem_response(404, "Not Found", "No webhook is registered; register one first.")
    return WebhookSecretRotated(
        url=rotated.registration.url,
        signature_scheme=rotated.registration.signature_scheme,
        secret=rotated.secret,
        previous_secret_valid_until=rotated.previous_valid_until,
    )


def _delivery(doc: dict[str, Any]) -> Delivery:
    return Delivery(
        id=doc["_id"],
        **{k: v for k, v in doc.items() if k not in ("_id", "log")},
        log=[_attempt(a) for a in doc.get("log", [])],
    )


@router.get(
    "/referrals/{referral_id}/deliveries",
    response_model=list[Delivery],
    tags=["webhooks"],
    summary="The webhook delivery log of a referral",
)
async def referral_deliveries(
    referral_id: str, caller: Caller, ctx: Ctx, request: Request
) -> list[Delivery]:
    """Every webhook delivery for this referral, with each attempt."""
    await _mine(ctx, referral_id, caller)
    store: MongoWebhookDeliveries = request.app.state.deliveries
    return [_delivery(d) for d in await store.for_referral(referral_id)]


async def _operator(
    request: Request,
    x_operator_token: Annotated[str | None, Header(description="The operator token")] = None,
) -> None:
    expected: str = request.app.state.operator_token
    if not x_operator_token or not hmac.compare_digest(x_operator_token, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid X-Operator-Token header is required.",
            headers={"WWW-Authenticate": "OperatorToken"},
        )


@router.post(
    "/operator/webhook-deliveries/{delivery_id}/redeliver",
    response_model=Delivery,
    tags=["operations"],
    summary="Redeliver a webhook now (operators)",
    dependencies=[Depends(_operator)],
)
async def redeliver(delivery_id: str, request: Request, ctx: Ctx) -> Delivery:
    """Make a delivery pending again and due now, with a fresh 24-hour retry window."""
    store: MongoWebhookDeliveries = request.app.state.deliveries
    if not await store.reschedule(delivery_id, ctx.clock()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such delivery.")
    doc = await store.get(delivery_id)
    assert doc is not None
    return _delivery(doc)
