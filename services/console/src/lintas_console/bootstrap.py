"""The console's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from lintas_shared.http import NATIVE_TELEMETRY_OFF, install_conventions
from lintas_shared.http_guard import HttpLimits
from lintas_shared.logging import configure_logging
from lintas_shared.mongo import make_mongo_client, ping
from lintas_shared.person_tokens import INTAKE_AUDIENCE, REFERRAL_AUDIENCE
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.gzip import GZipMiddleware

from lintas_console.adapters.mongo_people import MongoPeopleStore, MongoSessionStore
from lintas_console.adapters.passwords import Passwords
from lintas_console.adapters.services_api import (
    ApiProblemError,
    ServiceUnavailableError,
    service_client,
)
from lintas_console.domain.attempts import AttemptLimiter
from lintas_console.domain.sessions import SessionPolicy
from lintas_console.entrypoints import (
    pages_account,
    pages_cases,
    pages_people,
    pages_programme,
    pages_referrals,
)
from lintas_console.entrypoints.imports import MAX_UPLOAD_BYTES, ImportJobs
from lintas_console.entrypoints.web import (
    Console,
    CsrfRefusedError,
    PageNotFoundError,
    SecondFactorRequiredError,
    SecurityHeaders,
    SignInRequiredError,
    build_templates,
    redirect,
    render,
    use_anonymous_language,
)
from lintas_console.handlers import Accounts, PeopleAdmin
from lintas_console.i18n import Translator, load_catalogs
from lintas_console.settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"


def _(message: str) -> str:
    """Marks a message for the catalogs; translated when the page is shown."""
    return message


_NOT_YOURS = _(
    "There is nothing here for you. It may belong to another organisation, or it was never there."
)
#: What each failure shows: status, heading, message.
ERROR_PAGES: tuple[tuple[type[Exception], int, str, str], ...] = (
    (PageNotFoundError, 404, _("Not found"), _NOT_YOURS),
    (StarletteHTTPException, 404, _("Not found"), _NOT_YOURS),
    (
        CsrfRefusedError,
        403,
        _("Form expired"),
        _(
            "This form was not sent from this page, or it is too old. "
            "Go back, reload the page and send it again."
        ),
    ),
    (
        ServiceUnavailableError,
        503,
        _("Not available right now"),
        _("A Lintas service is not answering. Nothing was changed. Try again in a minute."),
    ),
    (
        Exception,
        500,
        _("Something went wrong"),
        _("Lintas could not show this page. Nothing was changed. Try again in a minute."),
    ),
    (
        ApiProblemError,
        502,
        _("Something went wrong"),
        _("A Lintas service refused the request. Nothing was changed."),
    ),
)


def _error_page(
    status: int, heading: str, message: str
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, _exc: Exception) -> Response:
        ctx: Console = request.app.state.console
        if "lintas_session" not in request.cookies:
            use_anonymous_language(request, ctx)
        _ = ctx.translator.gettext
        return render(
            ctx, request, "error.html", status=status, heading=_(heading), message=_(message)
        )

    return handler


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    """Build the console (uvicorn calls this with `--factory`)."""
    settings = settings or ConsoleSettings()
    common = settings.common
    configure_logging("console", common.log_level)
    # httpx logs every request's URL at info; the console's own request log is enough.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signing_key = settings.signing_key_path.read_text()
    mongo = make_mongo_client(common.mongodb_uri, app_name="lintas-console")
    database = mongo[settings.database]
    people = MongoPeopleStore(database["people"])
    sessions = MongoSessionStore(database["sessions"])
    passwords = Passwords()
    window = timedelta(minutes=settings.sign_in_window_minutes)
    translator = Translator(load_catalogs())
    ctx = Console(
        settings=settings,
        accounts=Accounts(
            people,
            sessions,
            passwords,
            policy=SessionPolicy(
                idle=timedelta(minutes=settings.session_idle_minutes),
                absolute=timedelta(hours=settings.session_absolute_hours),
            ),
            attempts=AttemptLimiter(settings.sign_in_attempts, window),
            enforce_second_factor=settings.require_second_factor,
        ),
        people=PeopleAdmin(
            people,
            sessions,
            passwords,
            public_url=settings.public_url,
            link_lifetime=timedelta(hours=settings.invitation_hours),
        ),
        intake=service_client(
            "intake",
            settings.intake_url,
            INTAKE_AUDIENCE,
            signing_key,
            settings.service_timeout_seconds,
        ),
        referral=service_client(
            "referral",
            settings.referral_url,
            REFERRAL_AUDIENCE,
            signing_key,
            settings.service_timeout_seconds,
        ),
        translator=translator,
        templates=build_templates(translator),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await people.ensure_indexes()
        await sessions.ensure_indexes()
        try:
            yield
        finally:
            await jobs.close()
            await ctx.intake.close()
            await ctx.referral.close()
            await mongo.close()

    app = FastAPI(
        title="Lintas console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
        lifespan=lifespan,
    )
    app.state.console = ctx
    jobs = ImportJobs()
    app.state.import_jobs = jobs

    async def store_ready() -> bool:
        return await ping(mongo)

    # An upload of cases may be larger, and slower to arrive, than any API body.
    limits = replace(
        HttpLimits.from_settings(common),
        max_body_bytes=max(common.http_max_body_bytes, MAX_UPLOAD_BYTES + 1_000_000),
        body_timeout_seconds=max(common.http_body_timeout_seconds, 120.0),
    )
    install_conventions(app, {"store": store_ready}, limits=limits)
    # Pages answer in HTML, not the APIs' problem documents.
    for exc_class, status, heading, message in ERROR_PAGES:
        app.add_exception_handler(exc_class, _error_page(status, heading, message))

    async def to_sign_in(_request: Request, _exc: Exception) -> Response:
        return redirect("/sign-in?expired=1")

    async def to_second_factor(_request: Request, _exc: Exception) -> Response:
        return redirect("/second-factor")

    app.add_exception_handler(SignInRequiredError, to_sign_in)
    app.add_exception_handler(SecondFactorRequiredError, to_second_factor)
    app.add_middleware(GZipMiddleware, minimum_size=500)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages_account.router)
    app.include_router(pages_cases.router)
    app.include_router(pages_referrals.router)
    app.include_router(pages_programme.router)
    app.include_router(pages_people.router)
    return app
