"""What every page shares: the signed-in visitor, CSRF checks, rendering in the person's
language, and the security headers of every answer."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from lintas_shared.person_tokens import PersonClaims, Role
from starlette.datastructures import FormData
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lintas_console.adapters.services_api import ServiceClient
from lintas_console.domain.people import Person
from lintas_console.domain.sessions import Session
from lintas_console.entrypoints.vocabulary import (
    COUNTRIES,
    CURRENCIES,
    LANGUAGES,
    TIME_ZONES,
    labels,
    timeline_text,
)
from lintas_console.handlers import Accounts, PeopleAdmin
from lintas_console.i18n import (
    LANGUAGE_NAMES,
    Translator,
    pick_language,
    show_date,
    show_datetime,
    show_money,
)
from lintas_console.settings import ConsoleSettings

SESSION_COOKIE: Final = "lintas_session"
#: Anonymous forms (sign-in, set password) carry a token matching this cookie.
FORM_COOKIE: Final = "lintas_form"
LANGUAGE_COOKIE: Final = "lintas_lang"
TEMPLATES: Final = Path(__file__).parent.parent / "templates"
#: No inline script or style anywhere: the policy allows only the console's own files.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Console:
    """Everything the pages use, built once by the composition root."""

    settings: ConsoleSettings
    accounts: Accounts
    people: PeopleAdmin
    intake: ServiceClient
    referral: ServiceClient
    translator: Translator
    templates: Environment


@dataclass(frozen=True)
class Visitor:
    """The signed-in person of this request."""

    session: Session
    person: Person
    cookie: str

    @property
    def claims(self) -> PersonClaims:
        """What the person tokens say of them."""
        return PersonClaims(self.person.organisation_id, self.person.id, self.person.role)

    @property
    def role(self) -> Role:
        """The person's role."""
        return self.person.role


class SignInRequiredError(Exception):
    """No live session: pages send the browser to the sign-in page."""


class SecondFactorRequiredError(Exception):
    """A correct password, still without its TOTP code."""


class CsrfRefusedError(Exception):
    """A form posted without the token of the page that showed it."""


class PageNotFoundError(Exception):
    """Nothing here for this person (also what another organisation's case looks like)."""


def build_templates(translator: Translator) -> Environment:
    """The Jinja2 environment, with gettext and the locale's formats."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        translator.gettext, translator.ngettext, newstyle=True
    )
    env.filters["date"] = show_date
    env.filters["datetime"] = show_datetime
    env.globals["money"] = show_money
    env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES
    return env


# async: FastAPI runs a plain function dependency in a worker thread, each request.
async def console(request: Request) -> Console:
    """The console of this app."""
    found: Console = request.app.state.console
    return found


Ctx = Annotated[Console, Depends(console)]


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy, uvicorn's --forwarded-allow-ips sets it)."""
    return request.client.host if request.client else "unknown"


async def _visitor(request: Request, ctx: Ctx) -> Visitor:
    cookie = request.cookies.get(SESSION_COOKIE)
    found = await ctx.accounts.resume(cookie) if cookie else None
    if found is None or cookie is None:
        raise SignInRequiredError
    session, person = found
    if not session.second_factor_done:
        raise SecondFactorRequiredError
    ctx.translator.use(session.language)
    return Visitor(session, person, cookie)


SignedIn = Annotated[Visitor, Depends(_visitor)]


def allow(visitor: Visitor, roles: Iterable[Role]) -> None:
    """Anything outside the person's role looks like a page that does not exist."""
    if visitor.role not in set(roles):
        raise PageNotFoundError


def use_anonymous_language(request: Request, ctx: Console) -> str:
    """The language of a visitor not signed in: their cookie, else their browser's."""
    language = pick_language(
        request.cookies.get(LANGUAGE_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )
    ctx.translator.use(language)
    return language


async def checked_form(request: Request, visitor: Visitor | None = None) -> FormData:
    """The posted form, refused (`CsrfRefusedError`) unless it carries the page's token."""
    form = await request.form()
    sent = form.get("csrf_token")
    expected = visitor.session.csrf_token if visitor else request.cookies.get(FORM_COOKIE)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        raise CsrfRefusedError
    return form


def render(
    ctx: Console,
    request: Request,
    template: str,
    *,
    visitor: Visitor | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page in the request's language. Anonymous pages get a fresh form token."""
    form_token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
    page = ctx.templates.get_template(template).render(
        request=request,
        visitor=visitor,
        person=visitor.person if visitor else None,
        csrf_token=visitor.session.csrf_token if visitor else form_token,
        language=ctx.translator.language(),
        roles=Role,
        L=labels(ctx.translator.gettext),
        LANGUAGE_OPTIONS=LANGUAGES,
        timeline_text=lambda entry: timeline_text(entry, ctx.translator.gettext),
        CURRENCIES=CURRENCIES,
        CURRENCY_OPTIONS={c: c for c in CURRENCIES},
        TIME_ZONE_OPTIONS={z: z for z in TIME_ZONES},
        COUNTRY_CODES=tuple(COUNTRIES),
        **context,
    )
    response = HTMLResponse(page, status_code=status)
    if visitor is None and FORM_COOKIE not in request.cookies:
        set_cookie(ctx, response, FORM_COOKIE, form_token)
    return response


def set_cookie(
    ctx: Console, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    """A cookie scripts cannot read, sent only to this site (and only over TLS behind it)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure_cookies,
        path="/",
    )


def redirect(path: str) -> RedirectResponse:
    """After a form: see the result with a GET (a reload does not post again)."""
    return RedirectResponse(path, status_code=303)


class SecurityHeaders:
    """Headers on every answer: no framing, no sniffing, no referrer, our own files only,
    and pages never cached (they may show personal data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"public, max-age=3600" if static else b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
