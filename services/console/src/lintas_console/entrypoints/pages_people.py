"""Org-admins' pages: the organisation's people (invite, disable, reset the second factor).

An org-admin manages their own organisation; an admin any (chosen with `?organisation=`).
The rules are `PeopleAdmin`'s: anything not the person's to touch answers as a page that
does not exist. A one-time link is shown once, on the page that answers the form.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lintas_console.domain.people import PeopleError, Person, Role
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
from lintas_console.handlers import NotAllowedError
from lintas_console.i18n import LANGUAGE_NAMES

router = APIRouter(include_in_schema=False)
ADMINS: Final = (Role.ORG_ADMIN, Role.ADMIN)


def _(message: str) -> str:
    """Marks a message for the catalogs; translated when the page is shown."""
    return message


ROLE_LABELS: Final = {
    Role.CASEWORKER.value: _("Caseworker"),
    Role.LAWYER.value: _("Lawyer"),
    Role.PROGRAMME.value: _("Programme (indicators and imports)"),
    Role.ORG_ADMIN.value: _("Organisation admin"),
    Role.ADMIN.value: _("Lintas admin"),
}
#: What each action's redirect says on the list.
DONE: Final = {
    "disabled": _("The person can no longer sign in, and their sessions have ended."),
    "enabled": _("The person can sign in again."),
    "reset": _("The second factor was reset. They set up a new authenticator at next sign-in."),
}
#: `PeopleAdmin`'s refusals, as the form shows them beside the email.
EMAIL_PROBLEMS: Final = {
    "not an email address": _("Not a valid email address."),
    "email already in use": _("This email address is already used by someone."),
}


def organisation_of_page(visitor: Visitor, asked: str | None) -> str:
    """Whose people: an org-admin's own organisation; an admin's choice (else their own)."""
    if visitor.role is Role.ADMIN and asked and asked.strip():
        return asked.strip()[:100]
    return visitor.person.organisation_id


def roles_for(actor: Person) -> dict[str, str]:
    """The roles the actor may give (an org-admin never makes an admin)."""
    return {
        code: text
        for code, text in ROLE_LABELS.items()
        if actor.role is Role.ADMIN or code != Role.ADMIN.value
    }


def _list_path(visitor: Visitor, organisation_id: str, **extra: str) -> str:
    query = dict(extra)
    if visitor.role is Role.ADMIN and organisation_id != visitor.person.organisation_id:
        query["organisation"] = organisation_id
    return "/people" + ("?" + urlencode(query) if query else "")


async def _people_page(
    request: Request,
    ctx: Console,
    visitor: Visitor,
    organisation_id: str,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    problem: str | None = None,
) -> Response:
    gettext = ctx.translator.gettext
    people = await ctx.accounts.people.of_organisation(organisation_id)
    return render(
        ctx,
        request,
        "people/list.html",
        visitor=visitor,
        status=status,
        organisation_id=organisation_id,
        people=people,
        role_labels={code: gettext(text) for code, text in ROLE_LABELS.items()},
        role_choices={code: gettext(text) for code, text in roles_for(visitor.person).items()},
        languages=LANGUAGE_NAMES,
        values=values or {"language": "id", "role": Role.CASEWORKER.value},
        errors=errors or {},
        notice=notice,
        problem=problem,
        is_admin=visitor.role is Role.ADMIN,
    )


@router.get("/people")
async def people_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The organisation's people, and a form to invite one more."""
    allow(visitor, ADMINS)
    organisation_id = organisation_of_page(visitor, request.query_params.get("organisation"))
    done = DONE.get(request.query_params.get("done") or "")
    notice = ctx.translator.gettext(done) if done else None
    return await _people_page(request, ctx, visitor, organisation_id, notice=notice)


@router.post("/people")
async def invite(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Create a person without a password; show their one-time link once."""
    allow(visitor, ADMINS)
    form = await checked_form(request, visitor)
    gettext = ctx.translator.gettext
    organisation_id = organisation_of_page(visitor, str(form.get("organisation", "")))
    values = {
        name: str(form.get(name, "")).strip()[:254]
        for name in ("email", "display_name", "role", "language")
    }
    errors: dict[str, str] = {}
    if values["role"] not in roles_for(visitor.person):
        errors["role"] = gettext("Choose one of the options.")
    if values["language"] not in LANGUAGE_NAMES:
        errors["language"] = gettext("Choose one of the options.")
    if not values["display_name"]:
        errors["display_name"] = gettext("This field is required.")
    if not values["email"]:
        errors["email"] = gettext("This field is required.")
    if not errors:
        try:
            invitation = await ctx.people.invite(
                visitor.person,
                organisation_id,
                Role(values["role"]),
                values["email"],
                values["display_name"],
                values["language"],
            )
        except NotAllowedError:
            raise PageNotFoundError from None
        except PeopleError as exc:
            errors["email"] = gettext(EMAIL_PROBLEMS.get(str(exc), _("This value is not valid.")))
        else:
            return _link_page(request, ctx, visitor, invitation.person, invitation.link, True)
    return await _people_page(
        request, ctx, visitor, organisation_id, status=422, values=values, errors=errors
    )


def _link_page(
    request: Request, ctx: Console, visitor: Visitor, person: Person, link: str, new: bool
) -> Response:
    return render(
        ctx,
        request,
        "people/link.html",
        visitor=visitor,
        invited=person,
        link=link,
        new=new,
        hours=ctx.settings.invitation_hours,
        back=_list_path(visitor, person.organisation_id),
        role_label=ctx.translator.gettext(ROLE_LABELS[person.role.value]),
    )


@router.post("/people/{person_id}/disable")
async def disable(request: Request, ctx: Ctx, visitor: SignedIn, person_id: str) -> Response:
    """Stop the person signing in; their sessions end now."""
    allow(visitor, ADMINS)
    await checked_form(request, visitor)
    if person_id == visitor.person.id:
        return await _people_page(
            request,
            ctx,
            visitor,
            visitor.person.organisation_id,
            status=409,
            problem=ctx.translator.gettext("You cannot disable yourself."),
        )
    return await _change(visitor, ctx.people.disable(visitor.person, person_id), "disabled")


async def _change(visitor: Visitor, change: Awaitable[Person], done: str) -> Response:
    """Carry out one change to a person and show the list again; a person the visitor
    may not touch looks like one that does not exist."""
    try:
        person = await change
    except NotAllowedError:
        raise PageNotFoundError from None
    return redirect(_list_path(visitor, person.organisation_id, done=done))


@router.post("/people/{person_id}/enable")
async def enable(request: Request, ctx: Ctx, visitor: SignedIn, person_id: str) -> Response:
    """Let a disabled person sign in again."""
    allow(visitor, ADMINS)
    await checked_form(request, visitor)
    return await _change(visitor, ctx.people.enable(visitor.person, person_id), "enabled")


@router.post("/people/{person_id}/reset-2fa")
async def reset_second_factor(
    request: Request, ctx: Ctx, visitor: SignedIn, person_id: str
) -> Response:
    """Forget the person's authenticator (a lost phone)."""
    allow(visitor, ADMINS)
    await checked_form(request, visitor)
    return await _change(
        visitor, ctx.people.reset_second_factor(visitor.person, person_id), "reset"
    )


@router.post("/people/{person_id}/link")
async def new_link(request: Request, ctx: Ctx, visitor: SignedIn, person_id: str) -> Response:
    """A fresh one-time link to set a password (a forgotten one, or a lost invitation)."""
    allow(visitor, ADMINS)
    await checked_form(request, visitor)
    try:
        link = await ctx.people.new_link(visitor.person, person_id)
    except NotAllowedError:
        raise PageNotFoundError from None
    person = await ctx.accounts.people.get(person_id)
    if person is None:
        raise PageNotFoundError
    return _link_page(request, ctx, visitor, person, link, False)
