"""Bulk import of cases by upload: the file's rows as API bodies, and the jobs that
submit them in the background.

The formats are those of the `lintas import` command: CSV with one claim per row (the
columns below; list-valued ones separated by ';'), or JSON Lines with one case document
per line. The console cannot depend on the tools package, so the mapping is repeated
here, small and pure.

The rows go to intake in batches (`POST /v1/cases/batch`: up to BATCH_ROWS rows and
BATCH_BYTES of JSON each, as `lintas import` sends them, CONCURRENCY batches in flight),
each row with an idempotency key made from the upload (who uploaded which bytes) and the
row number: uploading the same file again replays the earlier answers instead of making
new cases, and a row already imported another way is recognised by its external_ref.
Intake answers each row on its own; a batch intake cannot take now (down, slow, asks to
wait) is sent again whole, a few times, and a batch refused as a whole gives each of its
rows that refusal (one too large is first sent again in halves). The job keeps counts
and per-row errors (row, field, message), never the rows themselves; a message that
repeats a value of its row has it cut out.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from lintas_shared.case_rows import CSV_COLUMNS, EXAMPLE_ROW, csv_row_to_case
from lintas_shared.logging import get_logger

log = get_logger(__name__)

#: Largest upload accepted.
MAX_UPLOAD_BYTES: Final = 5 * 1024 * 1024
#: Batches one job has in flight at once.
CONCURRENCY: Final = 4
#: Most rows in one batch (intake takes up to 200; 100 typical cases stay well inside its
#: request body limit), as `lintas import` sends them.
BATCH_ROWS: Final = 100
#: Most JSON bytes of the rows of one batch (intake's default body limit is 256,000).
BATCH_BYTES: Final = 200_000
#: What a row adds to its batch beyond its case's JSON: its key and the envelope.
ROW_OVERHEAD_BYTES: Final = 100
#: Tries of one batch when intake is down, slow or says to wait.
ATTEMPTS: Final = 5
#: Seconds intake may take to answer one batch (a batch is many cases, not one).
BATCH_TIMEOUT_SECONDS: Final = 120.0
#: Errors kept per job (a file of nothing but bad rows still ends, and says so).
MAX_ERRORS: Final = 50_000

JSON_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")


def _(message: str) -> str:
    """Marks a message for the catalogs; translated when the report is shown."""
    return message


# Row-level problems (no field): English msgids, translated when shown.
NOT_JSON: Final = _("This line is not valid JSON.")
NOT_OBJECT: Final = _("This line is not a JSON object.")
UNAVAILABLE: Final = _("The case service did not answer; this row was not imported.")
FAULT: Final = _("A fault in the console stopped this row; it was not imported. Try it again.")
#: The `type` of a problem the importer found itself (its message is a msgid above).
ROW_PROBLEM: Final = "lintas_import"
#: The `type` of a refusal without a field (its message is the API's own).
API_PROBLEM: Final = "problem"


class FileKind(StrEnum):
    """The two formats an upload may be in."""

    CSV = "csv"
    JSON_LINES = "jsonl"


class UploadRefusedError(ValueError):
    """The upload cannot be imported at all; `reason` says why (a msgid)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


TOO_LARGE: Final = _("The file is larger than 5 MB. Split it into smaller files.")
WRONG_TYPE: Final = _(
    "This is not a CSV or JSON Lines file. Upload a .csv file with the column names on "
    "its first line, or a .jsonl file with one case per line."
)
NOT_TEXT: Final = _("The file is not UTF-8 text. Save it as CSV UTF-8 and try again.")
NO_ROWS: Final = _("The file has no rows to import.")
NO_FILE: Final = _("Choose a file to upload.")


def file_kind(filename: str, text: str) -> FileKind:
    """CSV or JSON Lines, from the name and the first line; `UploadRefusedError` when
    neither."""
    name = filename.lower().strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if name.endswith(JSON_SUFFIXES):
        if not first.startswith("{"):
            raise UploadRefusedError(WRONG_TYPE)
        return FileKind.JSON_LINES
    if name.endswith(".csv"):
        header = {cell.strip() for cell in next(csv.reader([first]), [])}
        if not header & set(CSV_COLUMNS):
            raise UploadRefusedError(WRONG_TYPE)
        return FileKind.CSV
    raise UploadRefusedError(WRONG_TYPE)


def decode(content: bytes) -> str:
    """The upload's text (a spreadsheet's byte-order mark dropped)."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise UploadRefusedError(TOO_LARGE)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UploadRefusedError(NOT_TEXT) from None
    if "\x00" in text:
        raise UploadRefusedError(NOT_TEXT)
    return text


Row = tuple[int, dict[str, Any] | str]


def read_rows(text: str, kind: FileKind) -> Iterator[Row]:
    """(row number, case document) for each row; a msgid where the row cannot be read.

    CSV rows are numbered as a spreadsheet shows them (the header is row 1); JSON Lines
    by line, blank lines skipped."""
    if kind is FileKind.JSON_LINES:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                yield number, NOT_JSON
                continue
            yield number, doc if isinstance(doc, dict) else NOT_OBJECT
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for number, row in enumerate(reader, 2):
        if not any(isinstance(v, str) and v.strip() for v in row.values()):
            continue  # an empty line a spreadsheet left at the end
        yield number, csv_row_to_case(row)


def count_rows(text: str, kind: FileKind) -> int:
    """How many rows `read_rows` gives."""
    return sum(1 for _row in read_rows(text, kind))


def with_defaults(doc: dict[str, Any], person_id: str) -> dict[str, Any]:
    """The document as submitted: a consent without `taken_by` was taken by the person
    importing it (as on the new-case form)."""
    consent = doc.get("consent")
    if isinstance(consent, dict) and not consent.get("taken_by"):
        doc = {**doc, "consent": {**consent, "taken_by": person_id}}
    return doc


def upload_id(content: bytes, organisation_id: str, person_id: str) -> str:
    """The same bytes uploaded by the same person: the same id, hence the same keys."""
    digest = hashlib.sha256()
    for part in (organisation_id.encode(), b"\x00", person_id.encode(), b"\x00", content):
        digest.update(part)
    return digest.hexdigest()[:32]


def idempotency_key(upload: str, row: int) -> str:
    """The Idempotency-Key of one row of one upload."""
    return f"console-import-{upload}-{row}"


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def scrub(message: str, row: dict[str, Any]) -> str:
    """`message` without any value of `row` in it (an error report holds no personal
    data, even if a validator were to quote what it refused)."""
    for value in sorted(set(_leaves(row)), key=len, reverse=True):
        if len(value) >= 3 and value in message:
            message = message.replace(value, "[…]")
    return message


# --- jobs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    """One problem of one row: the API's field path, its message and its type."""

    row: int
    field: str
    message: str
    type: str


class Outcome(StrEnum):
    """What became of a row."""

    CREATED = "created"
    ALREADY_PRESENT = "already_present"
    REFUSED = "refused"


@dataclass(frozen=True)
class RowResult:
    """Intake's answer to one row; `problems` are (field, message, type) when refused."""

    outcome: Outcome
    problems: tuple[tuple[str, str, str], ...] = ()


class TryAgainError(Exception):
    """Intake is down, slow or asks to wait: the batch is sent again a little later."""


class BatchRefusedError(Exception):
    """Intake refused a batch as a whole (HTTP `status`); each of its rows is refused
    with `problems` ((field, message, type), as in `RowResult`)."""

    def __init__(self, status: int, problems: tuple[tuple[str, str, str], ...]) -> None:
        super().__init__(f"batch refused: {status}")
        self.status = status
        self.problems = problems


class BatchAnswerError(ValueError):
    """Intake's answer to a batch does not account for each of its rows exactly once."""


#: One row as sent: its idempotency key and its case document.
BatchItem = tuple[str, dict[str, Any]]
#: Submits a batch of rows; one result per row, in the order sent. Raises
#: `TryAgainError` or `BatchRefusedError` for the batch as a whole.
Submit = Callable[[Sequence[BatchItem]], Awaitable[Sequence[RowResult]]]
Sleep = Callable[[float], Awaitable[None]]


def _row_result(answer: dict[str, Any]) -> RowResult:
    """One result of `POST /v1/cases/batch` as a row's outcome."""
    outcome = answer.get("outcome")
    if outcome == "created":
        return RowResult(Outcome.CREATED)
    if outcome == "already_present":
        return RowResult(Outcome.ALREADY_PRESENT)  # this upload's row, sent before
    if outcome == "conflict" and answer.get("existing_case_id"):
        return RowResult(Outcome.ALREADY_PRESENT)  # its external_ref is known
    if outcome in ("refused", "conflict"):
        problems = tuple(
            (str(e.get("field", "")), str(e.get("message", "")), str(e.get("type", "")))
            for e in answer.get("errors") or ()
            if isinstance(e, dict)
        )
        detail = answer.get("detail") or "The case service refused this row."
        return RowResult(Outcome.REFUSED, problems or (("", str(detail), API_PROBLEM),))
    raise BatchAnswerError(f"unknown outcome {str(outcome)[:40]!r}")


def batch_results(answer: Any, keys: Sequence[str]) -> list[RowResult]:
    """Each row's outcome from intake's answer to a batch of rows with these `keys`, in
    the order sent (matched by each result's index and key; `BatchAnswerError` when
    the answer does not account for every row exactly once)."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != len(keys):
        raise BatchAnswerError("the batch answer does not have one result per row")
    by_index: dict[int, RowResult] = {}
    for result in results:
        if not isinstance(result, dict):
            raise BatchAnswerError("a batch result is not an object")
        index = result.get("index")
        if not isinstance(index, int) or not 0 <= index < len(keys) or index in by_index:
            raise BatchAnswerError("a batch result has no index of its own")
        if result.get("idempotency_key") != keys[index]:
            raise BatchAnswerError("a batch result answers another row")
        by_index[index] = _row_result(result)
    return [by_index[i] for i in range(len(keys))]


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class ImportJob:
    """One upload being imported: counts and errors, never the rows."""

    id: str
    owner_id: str
    file_name: str
    upload_id: str
    total: int
    started_at: datetime
    created: int = 0
    already_present: int = 0
    refused: int = 0
    finished_at: datetime | None = None
    #: Set when the job ended early (a fault in the console), as a msgid.
    stopped: str | None = None
    errors: list[RowError] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Rows finished, whatever their fate."""
        return self.created + self.already_present + self.refused

    @property
    def running(self) -> bool:
        """Whether rows are still being sent."""
        return self.finished_at is None

    def record(self, number: int, result: RowResult, row: dict[str, Any] | None) -> None:
        """Count one row's outcome, keeping its problems without its values."""
        if result.outcome is Outcome.CREATED:
            self.created += 1
        elif result.outcome is Outcome.ALREADY_PRESENT:
            self.already_present += 1
        else:
            self.refused += 1
            for path, message, type_ in result.problems or (("", UNAVAILABLE, ROW_PROBLEM),):
                if len(self.errors) < MAX_ERRORS:
                    clean = scrub(message, row) if row else message
                    self.errors.append(RowError(number, path, clean, type_))

    def error_rows(self) -> list[RowError]:
        """The errors by row."""
        return sorted(self.errors, key=lambda e: (e.row, e.field))


STOPPED: Final = _(
    "The import stopped because of a fault in the console. Upload the file again: rows "
    "already imported are recognised."
)


#: Rows of one batch: (row number, the case document as sent).
Batch = list[tuple[int, dict[str, Any]]]


def batches(
    rows: Iterable[Row],
    job: ImportJob,
    person_id: str,
    *,
    size: int = BATCH_ROWS,
    max_bytes: int = BATCH_BYTES,
) -> Iterator[Batch]:
    """The readable rows, in file order, in batches of at most `size` rows and
    `max_bytes` of JSON (a larger row goes alone); a row that cannot be read is
    counted as refused on `job` straight away."""
    batch: Batch = []
    weight = 0
    for number, doc in rows:
        if isinstance(doc, str):
            job.record(number, RowResult(Outcome.REFUSED, (("", doc, ROW_PROBLEM),)), None)
            continue
        body = with_defaults(doc, person_id)
        cost = len(json.dumps(body)) + ROW_OVERHEAD_BYTES
        if batch and (len(batch) >= size or weight + cost > max_bytes):
            yield batch
            batch, weight = [], 0
        batch.append((number, body))
        weight += cost
    if batch:
        yield batch


def _all_refused(batch: Batch, problems: tuple[tuple[str, str, str], ...]) -> list[RowResult]:
    return [RowResult(Outcome.REFUSED, problems)] * len(batch)


async def _send(job: ImportJob, batch: Batch, submit: Submit, sleep: Sleep) -> list[RowResult]:
    """One result per row of `batch`, in order: the batch is sent again whole while
    intake cannot take it (then each row is "unavailable"), in two halves when intake
    finds it too large, and a refusal of the batch as a whole is each row's."""
    items = [(idempotency_key(job.upload_id, number), body) for number, body in batch]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            results = list(await submit(items))
        except TryAgainError:
            if attempt == ATTEMPTS:
                break
            await sleep(0.5 * 2**attempt)
            continue
        except BatchRefusedError as exc:
            if exc.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                first = await _send(job, batch[:half], submit, sleep)
                return first + await _send(job, batch[half:], submit, sleep)
            log.warning("import batch refused", job=job.id[:8], status=exc.status, rows=len(batch))
            return _all_refused(batch, exc.problems)
        if len(results) != len(batch):
            raise BatchAnswerError("not one result per row")
        return results
    log.warning("import batch given up", job=job.id[:8], attempts=ATTEMPTS, rows=len(batch))
    return _all_refused(batch, (("", UNAVAILABLE, ROW_PROBLEM),))


async def run_import(
    job: ImportJob,
    rows: Iterable[Row],
    submit: Submit,
    *,
    person_id: str,
    concurrency: int = CONCURRENCY,
    batch_size: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], datetime] = utc_now,
) -> ImportJob:
    """Submit every row in batches, a few batches at a time, counting each row's outcome
    on `job` as its batch is answered."""
    queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(1, concurrency) * 2)

    async def worker() -> None:
        while (batch := await queue.get()) is not None:
            try:
                results = await _send(job, batch, submit, sleep)
            except Exception as exc:  # one batch's fault must not stop the others
                log.warning(
                    "import batch failed",
                    job=job.id[:8],
                    first_row=batch[0][0],
                    rows=len(batch),
                    fault=type(exc).__name__,
                )
                results = _all_refused(batch, (("", FAULT, ROW_PROBLEM),))
            for (number, body), result in zip(batch, results, strict=True):
                job.record(number, result, body)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
    try:
        for batch in batches(rows, job, person_id, size=batch_size, max_bytes=batch_bytes):
            await queue.put(batch)
        for _w in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        job.finished_at = clock()
    return job


class ImportJobs:
    """The imports of this console instance, in memory: each visible only to the person
    who started it, forgotten a day after it ends."""

    def __init__(
        self,
        *,
        keep: timedelta = timedelta(hours=24),
        max_running_per_person: int = 2,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keep = keep
        self._max_running = max_running_per_person
        self._clock = clock

    def new(self, owner_id: str, file_name: str, upload: str, total: int) -> ImportJob:
        """A job about to start (ids are random: they appear in the page's address)."""
        self._forget_old()
        job = ImportJob(
            id=secrets.token_urlsafe(16),
            owner_id=owner_id,
            file_name=file_name[:200],
            upload_id=upload,
            total=total,
            started_at=self._clock(),
        )
        self._jobs[job.id] = job
        return job

    def busy(self, owner_id: str) -> bool:
        """Whether the person already has as many imports running as allowed."""
        running = [j for j in self._jobs.values() if j.owner_id == owner_id and j.running]
        return len(running) >= self._max_running

    def start(self, job: ImportJob, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, holding its task until it ends."""
        task = asyncio.get_running_loop().create_task(work, name=f"import-{job.id[:8]}")
        self._tasks.add(task)

        def ended(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            if done.cancelled():
                job.stopped = job.stopped or STOPPED
            elif done.exception() is not None:
                job.stopped = STOPPED
                log.error(
                    "import stopped",
                    job=job.id[:8],
                    rows_done=job.done,
                    fault=type(done.exception()).__name__,
                )
            if job.finished_at is None:
                job.finished_at = self._clock()

        task.add_done_callback(ended)

    def get(self, job_id: str, owner_id: str) -> ImportJob | None:
        """The job, if it is this person's."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.owner_id == owner_id else None

    def of_person(self, owner_id: str) -> list[ImportJob]:
        """The person's jobs, newest first."""
        self._forget_old()
        mine = [j for j in self._jobs.values() if j.owner_id == owner_id]
        return sorted(mine, key=lambda j: j.started_at, reverse=True)

    def _forget_old(self) -> None:
        limit = self._clock() - self._keep
        for job_id, job in list(self._jobs.items()):
            if job.finished_at is not None and job.finished_at < limit:
                del self._jobs[job_id]

    async def close(self) -> None:
        """Stop every running job (at shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def error_report_rows(
    job: ImportJob, explain: Callable[[RowError], str]
) -> list[tuple[int, str, str]]:
    """The per-row error report: (row, field, message), the message in the reader's
    language."""
    return [(e.row, e.field, explain(e)) for e in job.error_rows()]


def error_report_csv(rows: Iterable[tuple[int, str, str]]) -> str:
    """The report as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["row", "field", "message"])
    for number, path, message in rows:
        writer.writerow([number, path, _csv_safe(message)])
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """A spreadsheet must not take a message for a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def template_csv() -> str:
    """A file to start from: the header and one made-up row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerow(EXAMPLE_ROW)
    return out.getvalue()


__all__ = ["CSV_COLUMNS", "EXAMPLE_ROW", "csv_row_to_case"]
