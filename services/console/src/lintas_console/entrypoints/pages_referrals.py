"""Lawyers' pages: the referral inbox, one referral, filing deadlines, webhook settings.

Every read and write goes through referral's API as the signed-in lawyer, so the partner
sees only its own referrals (another partner's answers 404, shown as a page that does not
exist), and of a case exactly the fields its handoff shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lintas_console.adapters.services_api import (
    ApiProblemError,
    FieldProblem,
    ServiceUnavailableError,
)
from lintas_console.domain.people import Role
from lintas_console.entrypoints.forms import field_messages, nest
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
LAWYERS: Final = (Role.LAWYER,)
#: The statuses referral's API filters by (`GET /v1/referrals?status=`).
API_STATUSES: Final = (
    "offered",
    "accepted",
    "in_progress",
    "declined",
    "expired",
    "withdrawn",
    "closed",
)
#: A referral the partner still works on (or is asked to take).
OPEN_STATUSES: Final = frozenset({"offered", "accepted", "in_progress"})
#: The inbox's tabs; "open" (the three open statuses) is the default.
TABS: Final = ("open", "offered", "accepted", "in_progress", "all")
#: What the lawyer may do to a referral, by its status.
ACTIONS: Final[Mapping[str, frozenset[str]]] = {
    "offered": frozenset({"accept", "decline"}),
    "accepted": frozenset({"progress", "close", "hand_on"}),
    "in_progress": frozenset({"progress", "close", "hand_on"}),
}
#: The API path of each action.
ACTION_PATHS: Final = {
    "accept": "accept",
    "decline": "decline",
    "progress": "progress",
    "close": "close",
    "hand_on": "hand-on",
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _(message: str) -> str:
    """Marks a message for the catalogs; translated when the page is shown."""
    return message


#: Words for the field names of a shared case (unknown names are shown as they are).
FIELD_LABELS: Final = {
    "worker": _("Worker"),
    "full_name": _("Full name"),
    "phone": _("Phone"),
    "preferred_language": _("Preferred language"),
    "current_country": _("Country she is in now"),
    "employment": _("Employment"),
    "country": _("Country"),
    "sector": _("Sector"),
    "started_on": _("Started on"),
    "ended_on": _("Ended on"),
    "employer_name": _("Employer"),
    "placement_agency": _("Placement agency"),
    "claims": _("Claims"),
    "type": _("Type"),
    "amount": _("Amount"),
    "arose_on": _("Arose on"),
    "claimants": _("Number of claimants"),
    "description": _("Description"),
}
#: Fields holding a code, and the vocabulary (`L.<name>`) that names it.
VOCABULARY: Final = {
    "type": "claim_type",
    "sector": "sector",
    "country": "country",
    "current_country": "country",
    "gender": "gender",
    "preferred_language": "language",
}
#: The label of one item of a list field ("Claim 1", "Claim 2"...).
LIST_ITEM_LABELS: Final = {"claims": _("Claim %(number)d")}
#: The currency the close form starts with, by the referral's country.
CURRENCY_OF: Final = {"HK": "HKD", "SG": "SGD", "ID": "IDR", "MY": "MYR", "TW": "TWD", "SA": "SAR"}
WEBHOOK_URL_RULE: Final = _(
    "This address cannot receive events. Use one that starts with https:// "
    "(http://127.0.0.1 is allowed only on a development stack)."
)


# --- the shared case, shown generically ---------------------------------------------------

Kind = Literal["text", "date", "money", "code", "yes_no", "empty", "group"]


@dataclass(frozen=True)
class Shown:
    """One field of the shared case as the page shows it: a value of some kind, or a group
    of fields (a section, or the items of a list)."""

    path: str
    label: str
    kind: Kind
    text: str = ""
    currency: str = ""
    vocabulary: str = ""
    children: tuple[Shown, ...] = ()


def _label(key: str, translate: Callable[[str], str]) -> str:
    if key in FIELD_LABELS:
        return translate(FIELD_LABELS[key])
    return key.replace("_", " ").capitalize()


def _shown(path: str, key: str, label: str, value: Any, translate: Callable[[str], str]) -> Shown:
    if isinstance(value, Mapping):
        if set(value) == {"currency", "value"}:
            return Shown(
                path, label, "money", text=str(value["value"]), currency=str(value["currency"])
            )
        children = tuple(
            _shown(f"{path}.{k}", str(k), _label(str(k), translate), v, translate)
            for k, v in value.items()
        )
        return Shown(path, label, "group", children=children)
    if isinstance(value, list | tuple):
        item = LIST_ITEM_LABELS.get(key)
        children = tuple(
            _shown(
                f"{path}[{index}]",
                key,
                translate(item) % {"number": index + 1} if item else str(index + 1),
                v,
                translate,
            )
            for index, v in enumerate(value)
        )
        return Shown(path, label, "group", children=children)
    if value is None or value == "":
        return Shown(path, label, "empty")
    if isinstance(value, bool):
        return Shown(path, label, "yes_no", text="yes" if value else "no")
    if key in VOCABULARY:
        return Shown(path, label, "code", text=str(value), vocabulary=VOCABULARY[key])
    if isinstance(value, str) and _ISO_DATE.match(value):
        return Shown(path, label, "date", text=value)
    return Shown(path, label, "text", text=str(value))


def shared_view(
    shared: Mapping[str, Any] | None, translate: Callable[[str], str]
) -> tuple[Shown, ...]:
    """The shared case, field by field, exactly as the API gave it: every key present and
    nothing else (a money amount is one field; sections and lists are groups)."""
    if not shared:
        return ()
    return tuple(
        _shown(str(key), str(key), _label(str(key), translate), value, translate)
        for key, value in shared.items()
    )


# --- claims and deadlines -------------------------------------------------------------------


def unverified(claim: Mapping[str, Any]) -> bool:
    """The claim's routing rests on a rule, forum or deadline not yet checked against its
    source (ClaimRouting.verified, forum.verified, deadline.verified)."""
    forum = claim.get("forum") or {}
    deadline = claim.get("deadline") or {}
    return (
        claim.get("verified") is False
        or forum.get("verified") is False
        or deadline.get("verified") is False
    )


def _deadline_of(claim: Mapping[str, Any]) -> date | None:
    raw = (claim.get("deadline") or {}).get("date")
    try:
        return date.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


def nearest_deadline(referral: Mapping[str, Any]) -> date | None:
    """The earliest filing deadline among the referral's claims."""
    found = [d for d in map(_deadline_of, referral.get("claims") or ()) if d is not None]
    return min(found) if found else None


def sort_inbox(referrals: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Nearest filing deadline first (none last), then the oldest offer."""
    return sorted(
        referrals,
        key=lambda r: (nearest_deadline(r) or date.max, str(r.get("offered_at", ""))),
    )


@dataclass(frozen=True)
class DeadlineRow:
    """One claim's filing deadline in one referral."""

    on: date | None
    days_left: int | None
    referral_id: str
    case_reference: str
    status: str
    claim_type: str
    forum_name: str
    unverified: bool
    basis: str
    note: str
    passed: bool = False
    late_filing: str = ""
    missing: str = ""
    warnings: tuple[str, ...] = ()


def deadline_rows(
    referrals: Iterable[Mapping[str, Any]],
    today: date,
    statuses: frozenset[str] = OPEN_STATUSES,
) -> tuple[list[DeadlineRow], list[DeadlineRow]]:
    """Every claim's deadline across the referrals of `statuses`: those with a date,
    nearest first, and those whose date could not be worked out."""
    dated: list[DeadlineRow] = []
    undated: list[DeadlineRow] = []
    for referral in referrals:
        if referral.get("status") not in statuses:
            continue
        for claim in referral.get("claims") or ():
            on = _deadline_of(claim)
            row = DeadlineRow(
                on=on,
                days_left=(on - today).days if on else None,
                referral_id=str(referral["id"]),
                case_reference=str(referral.get("case_reference", "")),
                status=str(referral.get("status", "")),
                claim_type=str(claim.get("claim_type", "")),
                forum_name=str((claim.get("forum") or {}).get("name", "")),
                unverified=unverified(claim),
                basis=str((claim.get("deadline") or {}).get("basis", "")),
                note=str(claim.get("deadline_note") or ""),
                # Routing's own verdict on the day it routed, or past by today's date.
                passed=bool(claim.get("deadline_passed")) or (on is not None and on < today),
                late_filing=str(claim.get("late_filing") or ""),
                missing="; ".join(str(m) for m in claim.get("missing_facts") or ()),
                warnings=tuple(
                    str(w) for w in claim.get("warnings") or () if "deadline passed" not in str(w)
                ),
            )
            (dated if on else undated).append(row)
    dated.sort(key=lambda r: (r.on or date.max, r.case_reference, r.claim_type))
    undated.sort(key=lambda r: (r.case_reference, r.claim_type))
    return dated, undated


def inbox_filter(raw: str | None) -> str:
    """The inbox's filter: a tab, or one of the API's statuses (anything else: open)."""
    if raw in TABS or raw in API_STATUSES:
        return str(raw)
    return "open"


def actions_for(status: str) -> frozenset[str]:
    """The forms a referral of this status offers."""
    return ACTIONS.get(status, frozenset())


# --- forms to API bodies ---------------------------------------------------------------------


def typed_values(pairs: Iterable[tuple[str, str]], multi: Sequence[str] = ()) -> dict[str, str]:
    """What was typed, to fill the form again (checkbox groups joined by commas)."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name == "csrf_token":
            continue
        if name in multi and values.get(name):
            values[name] += f",{value}"
        else:
            values[name] = value
    return values


def progress_body(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The progress form as the API's ProgressRequest (unchecked boxes are false)."""
    values = dict(pairs)
    body: dict[str, Any] = {
        "filed_at_forum": values.get("filed_at_forum") == "true",
        "documents_needed": values.get("documents_needed") == "true",
    }
    hearing = values.get("hearing_on", "").strip()
    if hearing:
        body["hearing_on"] = hearing
    note = values.get("note", "").strip()
    if note:
        body["note"] = note
    return body


def close_body(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The close form as the API's CloseRequest (an amount only when a value is typed)."""
    body = nest(pairs)
    body["amounts_recovered"] = [
        a for a in body.get("amounts_recovered", []) if isinstance(a, dict) and a.get("value")
    ]
    return body


def hand_on_body(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The hand-on form as the API's HandOnRequest (the ticked claims by their index)."""
    listed = list(pairs)
    body = nest([(k, v) for k, v in listed if k != "claim_indexes"])
    body["claim_indexes"] = sorted(
        {int(v) for k, v in listed if k == "claim_indexes" and v.strip().isdigit()}
    )
    return body


def webhook_messages(
    problems: Iterable[FieldProblem], translate: Callable[[str], str]
) -> dict[str, str]:
    """The webhook form's errors: a URL the service will not send to is said plainly."""
    listed = list(problems)
    messages = field_messages(listed, translate)
    for problem in listed:
        if problem.field == "url" and problem.type == "value_error":
            messages["url"] = translate(WEBHOOK_URL_RULE)
    return messages


def _body(action: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    if action == "accept":
        return {}
    if action == "progress":
        return progress_body(pairs)
    if action == "close":
        return close_body(pairs)
    if action == "hand_on":
        return hand_on_body(pairs)
    return nest(pairs)


# --- pages ------------------------------------------------------------------------------------


def _path(referral_id: str, tail: str = "") -> str:
    return f"/v1/referrals/{quote(referral_id, safe='')}{tail}"


@router.get("/referrals")
async def inbox(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The partner's referrals: open ones by default, or one status; nearest filing
    deadline first."""
    allow(visitor, LAWYERS)
    chosen = inbox_filter(request.query_params.get("status"))
    params = {"status": chosen} if chosen in API_STATUSES else None
    answer = await ctx.referral.call(visitor.claims, "GET", "/v1/referrals", params=params)
    found: list[Mapping[str, Any]] = list(answer.data)
    if chosen == "open":
        found = [r for r in found if r.get("status") in OPEN_STATUSES]
    return render(
        ctx,
        request,
        "referrals/inbox.html",
        visitor=visitor,
        referrals=sort_inbox(found),
        chosen=chosen,
        tabs=TABS,
        statuses=API_STATUSES,
        unverified=unverified,
    )


async def _referral(ctx: Console, visitor: Visitor, referral_id: str) -> dict[str, Any]:
    try:
        answer = await ctx.referral.call(visitor.claims, "GET", _path(referral_id))
    except ApiProblemError as exc:
        if exc.status in (404, 422):
            raise PageNotFoundError from None
        raise
    data: dict[str, Any] = answer.data
    return data


async def _deliveries(ctx: Console, visitor: Visitor, referral_id: str) -> list[Any] | None:
    """The webhook delivery log, or None when it cannot be read now (not worth failing
    the page for)."""
    try:
        answer = await ctx.referral.call(visitor.claims, "GET", _path(referral_id, "/deliveries"))
    except (ApiProblemError, ServiceUnavailableError):
        return None
    return list(answer.data) if isinstance(answer.data, list) else None


async def _show(
    request: Request,
    ctx: Console,
    visitor: Visitor,
    referral: dict[str, Any],
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    history = referral.get("history") or []
    names = await ctx.accounts.people.names(
        sorted({str(h["person_id"]) for h in history if h.get("person_id")})
    )
    context: dict[str, Any] = {
        "values": {},
        "errors": {},
        "section": None,
        "done": None,
        "unavailable": False,
        "refused": None,
    }
    context.update(extra)
    return render(
        ctx,
        request,
        "referrals/referral.html",
        visitor=visitor,
        status=status,
        referral=referral,
        shared=shared_view(referral.get("shared"), ctx.translator.gettext),
        names=names,
        deliveries=await _deliveries(ctx, visitor, str(referral["id"])),
        actions=actions_for(str(referral.get("status"))),
        close_defaults={
            "amounts_recovered[0].currency": CURRENCY_OF.get(str(referral.get("country")), "USD")
        },
        unverified=unverified,
        **context,
    )


@router.get("/referrals/{referral_id}")
async def referral_page(
    request: Request, ctx: Ctx, visitor: SignedIn, referral_id: str
) -> Response:
    """The minimised view (exactly the handoff's fields), the handoff, claims with forum
    and deadline, history, and the forms the referral's status allows."""
    allow(visitor, LAWYERS)
    referral = await _referral(ctx, visitor, referral_id)
    done = request.query_params.get("done")
    return await _show(request, ctx, visitor, referral, done=done if done in ACTION_PATHS else None)


@router.post("/referrals/{referral_id}/{action}")
async def referral_command(
    request: Request, ctx: Ctx, visitor: SignedIn, referral_id: str, action: str
) -> Response:
    """Accept, decline, progress, close or hand on; on refusal the page again with the
    errors beside the fields and what was typed."""
    allow(visitor, LAWYERS)
    if action not in ACTION_PATHS:
        raise PageNotFoundError
    form = await checked_form(request, visitor)
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    values = typed_values(pairs, multi=("claim_indexes",))
    try:
        await ctx.referral.call(
            visitor.claims,
            "POST",
            _path(referral_id, f"/{ACTION_PATHS[action]}"),
            json=_body(action, pairs),
        )
    except ApiProblemError as exc:
        if exc.status == 404:
            raise PageNotFoundError from None
        referral = await _referral(ctx, visitor, referral_id)
        return await _show(
            request,
            ctx,
            visitor,
            referral,
            status=exc.status if exc.status in (409, 422) else 400,
            refused=exc,
            errors=field_messages(exc.errors, ctx.translator.gettext),
            values=values,
            section=action,
        )
    except ServiceUnavailableError:
        try:
            referral = await _referral(ctx, visitor, referral_id)
        except ServiceUnavailableError:
            # Not even the referral can be read: keep what was typed in its own form.
            return render(
                ctx,
                request,
                "referrals/retry.html",
                visitor=visitor,
                status=503,
                referral_id=referral_id,
                section=action,
                values=values,
                errors={},
                claims=[
                    {"claim_index": int(i), "claim_type": ""}
                    for i in values.get("claim_indexes", "").split(",")
                    if i.isdigit()
                ],
            )
        return await _show(
            request,
            ctx,
            visitor,
            referral,
            status=503,
            unavailable=True,
            values=values,
            section=action,
        )
    return redirect(f"/referrals/{quote(referral_id, safe='')}?done={action}")


@router.get("/deadlines")
async def deadlines(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Filing deadlines of the partner's open referrals, nearest first."""
    allow(visitor, LAWYERS)
    answer = await ctx.referral.call(visitor.claims, "GET", "/v1/referrals")
    dated, undated = deadline_rows(answer.data, datetime.now(UTC).date())
    return render(
        ctx, request, "referrals/deadlines.html", visitor=visitor, dated=dated, undated=undated
    )


#: The referral API's webhook signature schemes (its `signature_scheme`).
SIGNATURE_SCHEMES = ("standard", "both", "lintas-v1")


@router.get("/webhook")
async def webhook_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The form to set the organisation's webhook URL."""
    allow(visitor, LAWYERS)
    return render(ctx, request, "referrals/webhook.html", visitor=visitor, values={}, errors={})


async def _webhook_call(
    request: Request,
    ctx: Ctx,
    visitor: SignedIn,
    call: tuple[str, str, dict[str, Any]],
    context: dict[str, Any],
    refusal: Callable[[ApiProblemError], dict[str, Any]],
) -> Response | dict[str, Any]:
    """Call referral's webhook API (`call`: method, path, body) for the webhook page;
    the page itself when referral is unavailable or refuses (`refusal` says how)."""
    method, path, body = call
    try:
        answer = await ctx.referral.call(visitor.claims, method, path, json=body)
    except ServiceUnavailableError:
        return render(
            ctx,
            request,
            "referrals/webhook.html",
            visitor=visitor,
            status=503,
            unavailable=True,
            **context,
        )
    except ApiProblemError as exc:
        return render(
            ctx,
            request,
            "referrals/webhook.html",
            visitor=visitor,
            refused=exc,
            **{**context, **refusal(exc)},
        )
    data: dict[str, Any] = answer.data
    return data


@router.post("/webhook")
async def set_webhook(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Register the URL; the new secret is shown on this answer only (it is never stored
    by the console, so a redirect could not show it)."""
    allow(visitor, LAWYERS)
    form = await checked_form(request, visitor)
    scheme = str(form.get("signature_scheme", "standard"))
    values = {
        "url": str(form.get("url", "")).strip(),
        "signature_scheme": scheme if scheme in SIGNATURE_SCHEMES else "standard",
    }
    answer = await _webhook_call(
        request,
        ctx,
        visitor,
        ("PUT", "/v1/webhook", nest(values.items())),
        {"values": values, "errors": {}},
        lambda exc: {
            "status": exc.status if exc.status in (409, 422) else 400,
            "errors": webhook_messages(exc.errors, ctx.translator.gettext),
        },
    )
    if isinstance(answer, Response):
        return answer
    return render(
        ctx,
        request,
        "referrals/webhook.html",
        visitor=visitor,
        saved=answer,
        values={
            "url": answer.get("url", values["url"]),
            "signature_scheme": answer.get("signature_scheme", values["signature_scheme"]),
        },
        errors={},
    )


#: How long the old webhook secret keeps signing after a rotation (the referral API's
#: `overlap_hours`): the choices offered, the first the default.
ROTATION_OVERLAPS = ("24", "72", "168", "0")


@router.post("/webhook/rotate-secret")
async def rotate_webhook_secret(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Replace the webhook's signing secret; the old one keeps signing for the chosen
    overlap. The new secret is shown on this answer only (the console never stores it)."""
    allow(visitor, LAWYERS)
    form = await checked_form(request, visitor)
    overlap = str(form.get("overlap_hours", ROTATION_OVERLAPS[0]))
    overlap = overlap if overlap in ROTATION_OVERLAPS else ROTATION_OVERLAPS[0]
    answer = await _webhook_call(
        request,
        ctx,
        visitor,
        ("POST", "/v1/webhook/rotate-secret", {"overlap_hours": int(overlap)}),
        {"values": {"overlap_hours": overlap}, "errors": {}},
        lambda exc: {"status": 409 if exc.status == 404 else 400, "no_webhook": exc.status == 404},
    )
    if isinstance(answer, Response):
        return answer
    return render(
        ctx,
        request,
        "referrals/webhook.html",
        visitor=visitor,
        rotated=answer,
        overlap_hours=overlap,
        values={
            "url": answer.get("url", ""),
            "signature_scheme": answer.get("signature_scheme", "standard"),
        },
        errors={},
    )
