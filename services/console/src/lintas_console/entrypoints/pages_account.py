"""Signing in and out, the second factor, the one-time password link, the language."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lintas_console.domain.people import PeopleError, Role
from lintas_console.entrypoints.web import (
    FORM_COOKIE,
    LANGUAGE_COOKIE,
    SESSION_COOKIE,
    Ctx,
    SignedIn,
    Visitor,
    checked_form,
    client_address,
    redirect,
    render,
    set_cookie,
    use_anonymous_language,
)
from lintas_console.handlers import SignInRefusedError, SignInThrottledError
from lintas_console.i18n import LANGUAGES, pick_language

router = APIRouter(include_in_schema=False)

#: Where each role starts.
HOME = {
    Role.CASEWORKER: "/cases",
    Role.ORG_ADMIN: "/cases",
    Role.ADMIN: "/cases",
    Role.LAWYER: "/referrals",
    Role.PROGRAMME: "/indicators",
}


def home_of(visitor: Visitor) -> str:
    """The first page of the visitor's role."""
    return HOME.get(visitor.role, "/cases")


@router.get("/")
async def home(visitor: SignedIn) -> Response:
    """Straight to the person's own work."""
    return redirect(home_of(visitor))


@router.get("/sign-in")
async def sign_in_page(request: Request, ctx: Ctx) -> Response:
    """The sign-in form (also where a drafted case is cleared after signing out)."""
    use_anonymous_language(request, ctx)
    return render(
        ctx, request, "sign_in.html", signed_out=request.query_params.get("signed_out") == "1"
    )


@router.post("/sign-in")
async def sign_in(request: Request, ctx: Ctx) -> Response:
    """Check the password; the same answer whether or not the account exists."""
    language = use_anonymous_language(request, ctx)
    form = await checked_form(request)
    email = str(form.get("email", ""))
    try:
        signed = await ctx.accounts.sign_in(
            email,
            str(form.get("password", "")),
            client_address(request),
            language,
            request.cookies.get(SESSION_COOKIE),
        )
    except (SignInRefusedError, SignInThrottledError) as exc:
        return render(
            ctx,
            request,
            "sign_in.html",
            status=429 if isinstance(exc, SignInThrottledError) else 401,
            email=email,
            error="throttled" if isinstance(exc, SignInThrottledError) else "refused",
        )
    visitor = Visitor(signed.session, signed.person, signed.cookie)
    response = redirect(home_of(visitor) if signed.session.second_factor_done else "/second-factor")
    set_cookie(ctx, response, SESSION_COOKIE, signed.cookie)
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


async def _pending(request: Request, ctx: Ctx) -> Visitor | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    found = await ctx.accounts.resume(cookie) if cookie else None
    if found is None or cookie is None:
        return None
    ctx.translator.use(found[0].language)
    return Visitor(found[0], found[1], cookie)


@router.get("/second-factor")
async def second_factor_page(request: Request, ctx: Ctx) -> Response:
    """Ask for the TOTP code, or enrol an authenticator first."""
    visitor = await _pending(request, ctx)
    if visitor is None:
        return redirect("/sign-in")
    if visitor.session.second_factor_done:
        return redirect(home_of(visitor))
    secret = None
    if not visitor.person.has_second_factor:
        secret = visitor.session.pending_totp_secret or await ctx.accounts.start_enrolment(
            visitor.session
        )
    return render(
        ctx,
        request,
        "second_factor.html",
        visitor=visitor,
        secret=secret,
        uri=ctx.accounts.provisioning_uri(visitor.person, secret) if secret else None,
    )


@router.post("/second-factor")
async def second_factor(request: Request, ctx: Ctx) -> Response:
    """Check the code (and enrol the authenticator the first time)."""
    visitor = await _pending(request, ctx)
    if visitor is None:
        return redirect("/sign-in")
    form = await checked_form(request, visitor)
    try:
        await ctx.accounts.confirm_second_factor(
            visitor.session, visitor.person, str(form.get("code", ""))
        )
    except (SignInRefusedError, SignInThrottledError):
        return render(
            ctx,
            request,
            "second_factor.html",
            visitor=visitor,
            status=401,
            error=True,
            secret=visitor.session.pending_totp_secret,
            uri=None,
        )
    return redirect(home_of(visitor))


@router.post("/sign-out")
async def sign_out(request: Request, ctx: Ctx) -> Response:
    """End the session; the sign-in page it lands on clears drafts kept in the browser."""
    visitor = await _pending(request, ctx)
    if visitor is not None:
        await checked_form(request, visitor)
        await ctx.accounts.sign_out(visitor.cookie)
    response = redirect("/sign-in?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def choose_language(request: Request, ctx: Ctx) -> Response:
    """Switch between Bahasa Indonesia and English."""
    visitor = await _pending(request, ctx)
    form = await checked_form(request, visitor)
    language = pick_language(str(form.get("language", "")))
    back = str(form.get("back", "/"))
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    if visitor is not None:
        await ctx.accounts.set_language(visitor.session, visitor.person, language)
    response = redirect(back)
    set_cookie(ctx, response, LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600)
    return response


@router.get("/welcome/{token}")
async def welcome_page(request: Request, ctx: Ctx, token: str) -> Response:
    """The one-time link: choose a password."""
    use_anonymous_language(request, ctx)
    return render(ctx, request, "welcome.html", token=token)


@router.post("/welcome/{token}")
async def welcome(request: Request, ctx: Ctx, token: str) -> Response:
    """Set the password, then sign in with it."""
    use_anonymous_language(request, ctx)
    form = await checked_form(request)
    password = str(form.get("password", ""))
    if password != str(form.get("password_again", "")):
        return render(ctx, request, "welcome.html", token=token, error="mismatch", status=422)
    try:
        await ctx.people.set_password(token, password)
    except PeopleError as exc:
        error = "short" if "short" in str(exc) else "expired"
        return render(ctx, request, "welcome.html", token=token, error=error, status=422)
    return redirect("/sign-in?password_set=1")


__all__ = ["LANGUAGES", "router"]


@router.get("/account")
async def account_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Who you are here, and a second factor for those not required to have one."""
    return render(ctx, request, "account.html", visitor=visitor, secret=None)


@router.post("/account/second-factor")
async def start_second_factor(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Show a new authenticator key to add, and ask for a code from it."""
    await checked_form(request, visitor)
    secret = await ctx.accounts.start_enrolment(visitor.session)
    return render(
        ctx,
        request,
        "account.html",
        visitor=visitor,
        secret=secret,
        uri=ctx.accounts.provisioning_uri(visitor.person, secret),
    )


@router.post("/account/second-factor/confirm")
async def confirm_second_factor(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Enrol the authenticator once a code from it is right."""
    form = await checked_form(request, visitor)
    session = await ctx.accounts.sessions.get(visitor.session.key) or visitor.session
    try:
        await ctx.accounts.confirm_second_factor(session, visitor.person, str(form.get("code", "")))
    except (SignInRefusedError, SignInThrottledError):
        return render(
            ctx,
            request,
            "account.html",
            visitor=visitor,
            status=422,
            secret=session.pending_totp_secret,
            uri=None,
            error=True,
        )
    return redirect("/account?enrolled=1")
