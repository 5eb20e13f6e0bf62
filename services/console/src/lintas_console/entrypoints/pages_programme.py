"""Programme staff's pages: indicators with charts and CSV, bulk import by upload.

The indicators come from intake's report, read as the signed-in person (an NGO's person
sees their organisation's cases, an admin's all). Imports post the rows to intake in
batches as that person, in the background; the page of an import follows its progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final
from urllib.parse import urlencode

from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import Response
from lintas_shared.person_tokens import PersonClaims
from markupsafe import Markup
from starlette.datastructures import UploadFile

from lintas_console.adapters.services_api import (
    ApiProblemError,
    FieldProblem,
    ServiceUnavailableError,
)
from lintas_console.domain.people import Role
from lintas_console.entrypoints.charts import draw
from lintas_console.entrypoints.forms import explain
from lintas_console.entrypoints.imports import (
    API_PROBLEM,
    BATCH_TIMEOUT_SECONDS,
    CSV_COLUMNS,
    MAX_UPLOAD_BYTES,
    NO_FILE,
    NO_ROWS,
    ROW_PROBLEM,
    TOO_LARGE,
    BatchItem,
    BatchRefusedError,
    ImportJob,
    ImportJobs,
    RowError,
    RowResult,
    Submit,
    TryAgainError,
    UploadRefusedError,
    batch_results,
    count_rows,
    decode,
    error_report_csv,
    error_report_rows,
    file_kind,
    read_rows,
    run_import,
    template_csv,
    upload_id,
)
from lintas_console.entrypoints.vocabulary import labels
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
PROGRAMME: Final = (Role.PROGRAMME, Role.ORG_ADMIN, Role.ADMIN)
#: Seconds between refreshes of a running import's page (an HTTP `Refresh` header:
#: no JavaScript, and unlike `<meta http-equiv=refresh>` no axe `meta-refresh` finding).
REFRESH_SECONDS: Final = 2
#: Errors shown on an import's page (the CSV report has them all).
ERRORS_SHOWN: Final = 20
_NUMBER_LOCALES: Final = {"id": "id_ID", "en": "en_GB"}


# --- the period -------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The dates asked for (both ends included), and what is wrong with them."""

    start: date | None = None
    end: date | None = None
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def api_params(self) -> dict[str, str]:
        """intake's `from` and `to` (UTC midnights; `to` is exclusive there)."""
        params = {}
        if self.start is not None:
            params["from"] = f"{self.start.isoformat()}T00:00:00Z"
        if self.end is not None and self.end < date.max:
            params["to"] = f"{(self.end + timedelta(days=1)).isoformat()}T00:00:00Z"
        return params

    def query(self) -> str:
        """The period as the query string of this page's links ('' for all time)."""
        shown = {k: v for k, v in self.values.items() if v}
        return "?" + urlencode(shown) if shown else ""


def read_period(start: str | None, end: str | None, gettext: Callable[[str], str]) -> Period:
    """The period of the filter form; an unreadable date is named beside its field."""
    values = {"from": (start or "").strip()[:20], "to": (end or "").strip()[:20]}
    errors: dict[str, str] = {}
    parsed: dict[str, date | None] = {}
    for name, raw in values.items():
        try:
            parsed[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            parsed[name] = None
            errors[name] = gettext("Not a valid date.")
    first, last = parsed["from"], parsed["to"]
    if first is not None and last is not None and last < first:
        errors["to"] = gettext("The end of the period is before its start.")
    return Period(first, last, values, errors)


# --- the indicators ---------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One indicator broken down: a chart and the same numbers as a table."""

    name: str
    title: str
    heading: str
    rows: list[tuple[str, str]]
    chart: Markup


def number_in(language: str) -> Callable[[float | int], str]:
    """Numbers as the reader writes them (12.000,5 in Indonesian, 12,000.5 in English)."""
    locale = _NUMBER_LOCALES.get(language, "id_ID")

    def show(value: float | int) -> str:
        return format_decimal(value, locale=locale)

    return show


def indicator_sections(
    report: Mapping[str, Any],
    labels: Mapping[str, Mapping[str, str]],
    gettext: Callable[[str], str],
    number: Callable[[float | int], str],
) -> list[Section]:
    """The report's breakdowns, each with its words in the reader's language."""
    cases_by: Mapping[str, Mapping[str, int | None]] = report.get("cases_by", {})
    mark = suppression_mark(report)
    referrals = report.get("referrals", {})
    sms = report.get("sms", {})
    plan: list[tuple[str, str, str, Mapping[str, int | None], Mapping[str, str]]] = [
        (
            "status",
            gettext("Cases by status"),
            gettext("Status"),
            cases_by.get("status", {}),
            labels["case_status"],
        ),
        (
            "country",
            gettext("Cases by country of work"),
            gettext("Country of work"),
            cases_by.get("employment_country", {}),
            {**labels["country"], "unknown": gettext("Unknown")},
        ),
        (
            "claim-type",
            gettext("Claims by type"),
            gettext("Claim"),
            cases_by.get("claim_type", {}),
            labels["claim_type"],
        ),
        (
            "referrals",
            gettext("Referrals"),
            gettext("Referrals"),
            {k: int(referrals.get(k) or 0) for k in ("offered", "accepted", "declined")},
            {
                "offered": gettext("Offered"),
                "accepted": gettext("Accepted"),
                "declined": gettext("Declined"),
            },
        ),
        (
            "outcome",
            gettext("Closed cases by outcome"),
            gettext("Outcome"),
            report.get("closed_by_outcome", {}),
            labels["outcome"],
        ),
        (
            "sms",
            gettext("SMS to workers"),
            gettext("SMS messages"),
            {k: int(sms.get(k) or 0) for k in ("sent", "delivered")},
            {"sent": gettext("Sent"), "delivered": gettext("Delivered")},
        ),
    ]
    organisations = cases_by.get("organisation", {})
    if len(organisations) > 1:  # an NGO's own report has only itself
        plan.insert(
            3,
            (
                "organisation",
                gettext("Cases by organisation"),
                gettext("Organisation"),
                organisations,
                {},
            ),
        )
    sections = []
    for name, title, heading, counts, words in plan:
        rows = [
            (words.get(key, key), mark if n is None else number(int(n)))
            for key, n in counts.items()
        ]
        has_any = any(n is None or int(n) for n in counts.values())
        chart = draw(
            counts,
            title=title,
            name=name,
            labels=words,
            empty_text=gettext("None in this period."),
            number=number,
            suppressed_text=mark,
        )
        sections.append(Section(name, title, heading, rows if has_any else [], chart))
    return sections


def suppression_mark(report: Mapping[str, Any]) -> str:
    """How a suppressed count is shown ("<5" with the default minimum)."""
    return str((report.get("suppression") or {}).get("shown_as") or "<5")


@dataclass(frozen=True)
class GroupRow:
    """One group of workers: its words per dimension and its figures, as written."""

    labels: tuple[str, ...]
    cases: str
    median_days: str
    amounts: Mapping[str, str]
    suppressed: bool


@dataclass(frozen=True)
class GroupSection:
    """One breakdown by who the workers are: a table, and a chart when one-way."""

    name: str
    title: str
    headings: tuple[str, ...]
    rows: list[GroupRow]
    chart: Markup | None
    withheld: bool


def group_sections(
    report: Mapping[str, Any],
    labels: Mapping[str, Mapping[str, str]],
    gettext: Callable[[str], str],
    number: Callable[[float | int], str],
) -> list[GroupSection]:
    """The GEDSI breakdowns of the report (gender, age, disability, sector, country of
    work, home province, and their crossings), suppressed cells shown as "<5"."""
    mark = suppression_mark(report)
    unknown = gettext("Unknown")
    words: dict[str, tuple[str, Mapping[str, str]]] = {
        "gender": (gettext("Gender"), {**labels["gender"], "unknown": unknown}),
        "age_band": (
            gettext("Age"),
            {"under_18": gettext("Under 18"), "45+": gettext("45 and over"), "unknown": unknown},
        ),
        "disability": (
            gettext("Disability"),
            {
                "yes": gettext("With a disability"),
                "no": gettext("Without a disability"),
                "unknown": gettext("Not asked or not answered"),
            },
        ),
        "sector": (gettext("Sector"), {**labels["sector"], "unknown": unknown}),
        "employment_country": (
            gettext("Country of work"),
            {**labels["country"], "unknown": unknown},
        ),
        "home_province": (gettext("Home province"), {"unknown": unknown}),
    }
    titles = {
        "gender": gettext("Workers by gender"),
        "age_band": gettext("Workers by age at submission"),
        "disability": gettext("Workers by disability"),
        "sector": gettext("Workers by sector"),
        "employment_country": gettext("Workers by country of work"),
        "home_province": gettext("Workers by home province"),
        "gender_sector_disability": gettext("Workers by gender, sector and disability"),
        "gender_age_band": gettext("Workers by gender and age"),
    }
    sections = []
    for name, part in (report.get("breakdowns") or {}).items():
        dims = tuple(part.get("dimensions") or ())
        if not dims or any(d not in words for d in dims):
            continue
        rows = []
        counts: dict[str, int | None] = {}
        chart_words: dict[str, str] = {}
        for group in part.get("groups") or ():
            values = tuple(str(group["group"].get(d, "")) for d in dims)
            shown = tuple(words[d][1].get(v, v) for d, v in zip(dims, values, strict=True))
            cases = group.get("cases")
            median = group.get("median_days_submission_to_acceptance")
            rows.append(
                GroupRow(
                    labels=shown,
                    cases=mark if cases is None else number(int(cases)),
                    median_days="—" if median is None else number(median),
                    amounts=group.get("amounts_recovered") or {},
                    suppressed=bool(group.get("suppressed")),
                )
            )
            key = "|".join(values)
            counts[key] = None if cases is None else int(cases)
            chart_words[key] = " · ".join(shown)
        title = titles.get(name, name)
        chart = None
        if len(dims) == 1 and rows:
            chart = draw(
                counts,
                title=title,
                name=f"workers-{name}",
                labels=chart_words,
                empty_text=gettext("None in this period."),
                number=number,
                suppressed_text=mark,
            )
        sections.append(
            GroupSection(
                name=name.replace("_", "-"),
                title=title,
                headings=tuple(words[d][0] for d in dims),
                rows=rows,
                chart=chart,
                withheld=bool(part.get("withheld")),
            )
        )
    return sections


@router.get("/indicators")
async def indicators_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """The indicators of a period, as charts and tables, with a CSV download."""
    allow(visitor, PROGRAMME)
    gettext = ctx.translator.gettext
    period = read_period(request.query_params.get("from"), request.query_params.get("to"), gettext)
    report: dict[str, Any] | None = None
    unavailable = False
    errors = dict(period.errors)
    if not errors:
        try:
            answer = await ctx.intake.call(
                visitor.claims, "GET", "/v1/reports/indicators", params=period.api_params()
            )
            report = answer.data
        except ServiceUnavailableError:
            unavailable = True
        except ApiProblemError as exc:
            if exc.status in (403, 404):
                raise PageNotFoundError from None
            if exc.status != 422:
                raise
            errors["from"] = gettext("Not a valid date.")
    number = number_in(ctx.translator.language())
    median = (report or {}).get("referrals", {}).get("median_hours_submission_to_acceptance")
    return render(
        ctx,
        request,
        "programme/indicators.html",
        visitor=visitor,
        status=503 if unavailable else (422 if errors else 200),
        values=period.values,
        errors=errors,
        query=period.query(),
        report=report,
        cases=number(int(report["cases"])) if report else "",
        median=number(median) if median is not None else None,
        sections=indicator_sections(report, labels(gettext), gettext, number) if report else [],
        groups=group_sections(report, labels(gettext), gettext, number) if report else [],
        min_cell=(report.get("suppression") or {}).get("min_cell", 5) if report else 5,
        suppressed=suppression_mark(report) if report else "<5",
        unavailable=unavailable,
    )


@router.get("/indicators.csv")
async def indicators_csv(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """intake's CSV of the same period, as a download."""
    allow(visitor, PROGRAMME)
    period = read_period(
        request.query_params.get("from"), request.query_params.get("to"), ctx.translator.gettext
    )
    if period.errors:
        return redirect("/indicators" + period.query())
    try:
        answer = await ctx.intake.call(
            visitor.claims,
            "GET",
            "/v1/reports/indicators",
            params={**period.api_params(), "format": "csv"},
        )
    except ApiProblemError as exc:
        if exc.status in (403, 404):
            raise PageNotFoundError from None
        raise
    name = "lintas-indicators"
    if period.start:
        name += f"-from-{period.start.isoformat()}"
    if period.end:
        name += f"-to-{period.end.isoformat()}"
    return Response(
        answer.data if isinstance(answer.data, str) else str(answer.data),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# --- imports ----------------------------------------------------------------------------


def import_jobs(request: Request) -> ImportJobs:
    """This app's registry of imports (made on first use)."""
    jobs: ImportJobs | None = getattr(request.app.state, "import_jobs", None)
    if jobs is None:
        jobs = ImportJobs()
        request.app.state.import_jobs = jobs
    return jobs


def submitter(ctx: Console, claims: PersonClaims) -> Submit:
    """Posts a batch of rows to intake (`POST /v1/cases/batch`) as the person who
    uploaded the file; each row's result in the order sent."""

    async def submit(items: Sequence[BatchItem]) -> list[RowResult]:
        body = {"cases": [{"idempotency_key": key, "case": doc} for key, doc in items]}
        try:
            answer = await ctx.intake.call(
                claims,
                "POST",
                "/v1/cases/batch",
                json=body,
                timeout_seconds=BATCH_TIMEOUT_SECONDS,
            )
        except ServiceUnavailableError:
            raise TryAgainError from None
        except ApiProblemError as exc:
            if exc.status in (408, 429, 500):
                raise TryAgainError from None
            # The batch as a whole (its size, the person's rights): its field errors
            # name places in the batch, not in a row, so each row gets the problem.
            detail = exc.detail or exc.title
            raise BatchRefusedError(exc.status, (("", detail, API_PROBLEM),)) from None
        return batch_results(answer.data, [key for key, _doc in items])

    return submit


def row_error_text(translate: Callable[[str], str]) -> Callable[[RowError], str]:
    """A row's error as the reader reads it."""

    def text(error: RowError) -> str:
        if error.type == ROW_PROBLEM:
            return translate(error.message)
        if error.type == API_PROBLEM:
            return error.message
        return explain(FieldProblem(error.field, error.message, error.type), translate)

    return text


def _imports_page(
    request: Request,
    ctx: Console,
    visitor: Visitor,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Response:
    return render(
        ctx,
        request,
        "programme/imports.html",
        visitor=visitor,
        status=status,
        errors=errors or {},
        jobs=import_jobs(request).of_person(visitor.person.id),
        columns=CSV_COLUMNS,
        max_megabytes=MAX_UPLOAD_BYTES // (1024 * 1024),
    )


@router.get("/imports")
async def imports_page(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Upload a file of cases; the person's recent imports."""
    allow(visitor, PROGRAMME)
    return _imports_page(request, ctx, visitor)


@router.get("/imports/template.csv")
async def import_template(ctx: Ctx, visitor: SignedIn) -> Response:
    """A CSV to start from: the columns and one made-up row."""
    allow(visitor, PROGRAMME)
    return Response(
        template_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="lintas-import-template.csv"'},
    )


@router.post("/imports")
async def upload(request: Request, ctx: Ctx, visitor: SignedIn) -> Response:
    """Check the file, then import its rows in the background and show the progress."""
    allow(visitor, PROGRAMME)
    form = await checked_form(request, visitor)
    gettext = ctx.translator.gettext
    jobs = import_jobs(request)
    if jobs.busy(visitor.person.id):
        message = gettext("Your earlier imports are still running. Wait until one ends.")
        return _imports_page(request, ctx, visitor, status=429, errors={"file": message})
    sent = form.get("file")
    try:
        if not isinstance(sent, UploadFile) or not sent.filename:
            raise UploadRefusedError(NO_FILE)
        content = await sent.read(MAX_UPLOAD_BYTES + 1)
        text = decode(content)
        kind = file_kind(sent.filename, text)
        total = count_rows(text, kind)
        if total == 0:
            raise UploadRefusedError(NO_ROWS)
    except UploadRefusedError as exc:
        status = 413 if exc.reason == TOO_LARGE else 422
        errors = {"file": gettext(exc.reason)}
        return _imports_page(request, ctx, visitor, status=status, errors=errors)
    person = visitor.person
    job = jobs.new(
        person.id, sent.filename, upload_id(content, person.organisation_id, person.id), total
    )
    jobs.start(
        job,
        run_import(
            job,
            read_rows(text, kind),
            submitter(ctx, visitor.claims),
            person_id=person.id,
        ),
    )
    return redirect(f"/imports/{job.id}")


def _job(request: Request, visitor: Visitor, job_id: str) -> ImportJob:
    job = import_jobs(request).get(job_id, visitor.person.id)
    if job is None:
        raise PageNotFoundError
    return job


@router.get("/imports/{job_id}")
async def import_page(request: Request, ctx: Ctx, visitor: SignedIn, job_id: str) -> Response:
    """n of m rows, created, already present, refused; refreshes itself while running."""
    allow(visitor, PROGRAMME)
    job = _job(request, visitor, job_id)
    watching = job.running and request.query_params.get("still") != "1"
    text = row_error_text(ctx.translator.gettext)
    shown = [(e.row, e.field, text(e)) for e in job.error_rows()[:ERRORS_SHOWN]]
    response = render(
        ctx,
        request,
        "programme/import.html",
        visitor=visitor,
        job=job,
        shown_errors=shown,
        watching=watching,
        refresh_seconds=REFRESH_SECONDS,
        stopped=ctx.translator.gettext(job.stopped) if job.stopped else None,
    )
    if watching:
        response.headers["Refresh"] = str(REFRESH_SECONDS)
    return response


@router.get("/imports/{job_id}/errors.csv")
async def import_errors(request: Request, ctx: Ctx, visitor: SignedIn, job_id: str) -> Response:
    """The per-row error report: row, field, message (never a value of the row)."""
    allow(visitor, PROGRAMME)
    job = _job(request, visitor, job_id)
    rows = error_report_rows(job, row_error_text(ctx.translator.gettext))
    return Response(
        error_report_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="import-errors-{job.id[:8]}.csv"'},
    )
