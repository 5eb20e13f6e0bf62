"""Programme pages: import rows to API bodies, stable idempotency keys, an error report
without personal data, the import job, and the indicators page with its charts and CSV
(unit tier: the pages run in-process against a fake intake, no I/O)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from lintas_console.adapters.services_api import (
    Answer,
    ApiProblemError,
    FieldProblem,
    ServiceClient,
    ServiceUnavailableError,
)
from lintas_console.domain.people import Person, Role
from lintas_console.entrypoints import pages_programme
from lintas_console.entrypoints.imports import (
    API_PROBLEM,
    ATTEMPTS,
    BATCH_ROWS,
    BATCH_TIMEOUT_SECONDS,
    CONCURRENCY,
    EXAMPLE_ROW,
    FAULT,
    MAX_UPLOAD_BYTES,
    NOT_JSON,
    NOT_OBJECT,
    ROW_PROBLEM,
    UNAVAILABLE,
    BatchAnswerError,
    BatchItem,
    BatchRefusedError,
    FileKind,
    ImportJob,
    ImportJobs,
    Outcome,
    RowResult,
    TryAgainError,
    UploadRefusedError,
    batch_results,
    batches,
    csv_row_to_case,
    decode,
    error_report_csv,
    error_report_rows,
    file_kind,
    idempotency_key,
    read_rows,
    run_import,
    scrub,
    template_csv,
    upload_id,
    with_defaults,
)
from lintas_console.entrypoints.pages_programme import read_period, row_error_text, submitter
from lintas_console.entrypoints.web import Console
from lintas_console.i18n import Translator, load_catalogs
from lintas_shared.person_tokens import PersonClaims
from lintas_shared.person_tokens import Role as ClaimRole

from services.console.tests.fakes import pages_app

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PHONE = "+6281234567890"
NAME = "Contoh Pekerja"
HEADER = ",".join(EXAMPLE_ROW)


def _csv(*rows: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXAMPLE_ROW))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _row(n: int, **changes: str) -> dict[str, str]:
    return {**EXAMPLE_ROW, "external_ref": f"NGO-{n:04d}", **changes}


# --- rows to API bodies -----------------------------------------------------------------


def test_a_csv_row_is_the_case_document_the_api_takes() -> None:
    row: dict[str, Any] = {
        **EXAMPLE_ROW,
        "claim_claimants": "2",
        "worker_gender": "  ",
        "consent_share_with_countries": "HK; SG;",
    }
    doc = csv_row_to_case(row)
    assert doc["external_ref"] == "NGO-LPG-2026-0042"
    assert doc["worker"] == {
        "full_name": NAME,
        "phone": PHONE,
        "preferred_language": "id",
        "current_country": "ID",
    }
    assert doc["employment"]["country"] == "HK"
    assert doc["claims"] == [
        {
            "type": "unpaid_wages",
            "amount": {"currency": "HKD", "value": "12000.00"},
            "arose_on": "2026-08-31",
            "claimants": 2,
        }
    ]
    assert doc["consent"]["purposes"] == ["legal_referral", "sms_updates"]
    assert doc["consent"]["share_with_countries"] == ["HK", "SG"]
    assert "gender" not in doc["worker"]  # an empty cell is left out


def test_an_unknown_column_is_kept_for_the_api_to_name_and_extra_cells_are_ignored() -> None:
    doc = csv_row_to_case({"external_ref": "X", "colour": "blue", None: ["spill"]})
    assert doc["colour"] == "blue"
    assert None not in doc


def test_csv_rows_are_numbered_as_a_spreadsheet_shows_them() -> None:
    text = _csv(_row(1), _row(2)) + ",,,\n"
    rows = list(read_rows(text, FileKind.CSV))
    assert [n for n, _doc in rows] == [2, 3]  # the header is row 1; the empty line is skipped
    assert isinstance(rows[1][1], dict)
    assert rows[1][1]["external_ref"] == "NGO-0002"


def test_json_lines_are_numbered_by_line_and_bad_lines_are_named() -> None:
    text = '{"external_ref": "A"}\n\nnot json\n[1, 2]\n{"external_ref": "B"}\n'
    rows = list(read_rows(text, FileKind.JSON_LINES))
    assert rows == [
        (1, {"external_ref": "A"}),
        (3, NOT_JSON),
        (4, NOT_OBJECT),
        (5, {"external_ref": "B"}),
    ]


def test_a_consent_without_taken_by_was_taken_by_the_person_importing() -> None:
    doc = {"consent": {"language": "id"}}
    assert with_defaults(doc, "person-1")["consent"]["taken_by"] == "person-1"
    assert doc == {"consent": {"language": "id"}}  # the row itself is left as it was
    kept = {"consent": {"taken_by": "caseworker-17"}}
    assert with_defaults(kept, "person-1")["consent"]["taken_by"] == "caseworker-17"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("cases.xlsx", HEADER + "\n"),
        ("cases.csv", "name;phone\nSiti;+62\n"),
        ("cases.jsonl", HEADER + "\n"),
        ("cases", HEADER + "\n"),
    ],
)
def test_a_wrong_file_type_is_refused(name: str, text: str) -> None:
    with pytest.raises(UploadRefusedError):
        file_kind(name, text)


def test_the_file_type_comes_from_the_name_and_the_first_line() -> None:
    assert file_kind("Cases.CSV", HEADER + "\n") is FileKind.CSV
    assert file_kind("cases.jsonl", '\n{"external_ref": "A"}\n') is FileKind.JSON_LINES
    assert file_kind("cases.ndjson", '{"a": 1}') is FileKind.JSON_LINES


def test_uploads_must_be_utf8_text_of_at_most_5_mb() -> None:
    assert decode("\ufeffexternal_ref\n".encode()) == "external_ref\n"  # Excel's BOM
    with pytest.raises(UploadRefusedError):
        decode(b"\xff\xfe\x00e\x00x")
    with pytest.raises(UploadRefusedError):
        decode(b"x" * (MAX_UPLOAD_BYTES + 1))


# --- idempotency ------------------------------------------------------------------------


def test_idempotency_keys_are_stable_per_upload_and_row() -> None:
    content = _csv(_row(1), _row(2)).encode()
    upload = upload_id(content, "ngo-a", "person-1")
    assert upload == upload_id(content, "ngo-a", "person-1")  # the same file again
    assert idempotency_key(upload, 2) == idempotency_key(upload, 2)
    assert idempotency_key(upload, 2) != idempotency_key(upload, 3)
    others = {
        upload_id(content + b"\n", "ngo-a", "person-1"),
        upload_id(content, "ngo-b", "person-1"),
        upload_id(content, "ngo-a", "person-2"),
    }
    assert upload not in others
    assert len(others) == 3
    assert len(idempotency_key(upload, 100_000)) <= 200  # intake's header limit


# --- the job ----------------------------------------------------------------------------


class FakeIntakeCases:
    """POST /v1/cases/batch as intake answers it, row by row: replays by key, a conflict
    naming the case for a known external_ref, a refusal naming a bad phone (quoting it,
    to prove the report does not). `fail_first` batches raise TryAgainError; `refuse`
    refuses every batch as a whole with that status (413 only above `max_rows`)."""

    def __init__(
        self, *, fail_first: int = 0, refuse: int | None = None, max_rows: int = 200
    ) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, str] = {}
        self.batches: list[list[str]] = []  # the keys of every batch received
        self.fail_first = fail_first
        self.refuse = refuse
        self.max_rows = max_rows

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to one batch body (results in request order)."""
        results = []
        for index, item in enumerate(body["cases"]):
            key, doc = item["idempotency_key"], item["case"]
            result: dict[str, Any] = {"index": index, "idempotency_key": key}
            phone = doc.get("worker", {}).get("phone", "")
            if key in self.by_key:
                result["outcome"] = "already_present"
            elif not phone.startswith("+"):
                result["outcome"] = "refused"
                result["errors"] = [
                    {
                        "field": "worker.phone",
                        "message": f"Value error, {phone} is not a phone number",
                        "type": "value_error",
                    }
                ]
            elif doc["external_ref"] in self.refs:
                result["outcome"] = "conflict"
                result["detail"] = f"external_ref {doc['external_ref']} is already used"
                result["existing_case_id"] = self.refs[doc["external_ref"]]
            else:
                self.by_key[key] = doc
                self.refs[doc["external_ref"]] = f"case-{len(self.refs) + 1}"
                result["outcome"] = "created"
            results.append(result)
        return {"results": results}

    async def submit(self, items: Sequence[BatchItem]) -> list[RowResult]:
        """The console's side of a batch: as the submitter gives it to the job."""
        self.batches.append([key for key, _doc in items])
        if len(self.batches) <= self.fail_first:
            raise TryAgainError
        if self.refuse == 413 and len(items) > self.max_rows:
            raise BatchRefusedError(413, (("", "Body too large", API_PROBLEM),))
        if self.refuse is not None and self.refuse != 413:
            raise BatchRefusedError(self.refuse, (("", "Only NGOs submit cases.", API_PROBLEM),))
        body = {"cases": [{"idempotency_key": key, "case": doc} for key, doc in items]}
        return batch_results(self.answer(body), [key for key, _doc in items])


class Sleeps:
    """asyncio.sleep that only notes how long it was asked to wait."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


async def _no_sleep(_seconds: float) -> None:
    return None


def _job(text: str, upload: str = "u1") -> ImportJob:
    total = sum(1 for _ in read_rows(text, FileKind.CSV))
    return ImportJob("job-1", "person-1", "cases.csv", upload, total, T0)


def _rows_of(intake: FakeIntakeCases, upload: str = "u1") -> list[list[int]]:
    prefix = f"console-import-{upload}-"
    return [[int(key.removeprefix(prefix)) for key in keys] for keys in intake.batches]


async def test_an_import_counts_each_outcome_and_a_second_run_makes_nothing_new() -> None:
    text = _csv(_row(1), _row(2, worker_phone="0812-3456"), _row(3))
    intake = FakeIntakeCases()
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), intake.submit, person_id="p-1"
    )
    assert (job.total, job.done, job.created, job.already_present, job.refused) == (3, 3, 2, 0, 1)
    assert not job.running
    assert _rows_of(intake) == [[2, 3, 4]]  # one batch, each row keyed by upload and row
    again = await run_import(
        _job(text), read_rows(text, FileKind.CSV), intake.submit, person_id="p-1"
    )
    assert (again.created, again.already_present, again.refused) == (0, 2, 1)
    assert len(intake.by_key) == 2
    # The same rows in another upload: known by their external_ref, still nothing new.
    other = await run_import(
        _job(text, "u2"), read_rows(text, FileKind.CSV), intake.submit, person_id="p-1"
    )
    assert (other.created, other.already_present) == (0, 2)


async def test_rows_are_split_into_batches_in_file_order() -> None:
    text = _csv(*(_row(n) for n in range(1, 251)))
    intake = FakeIntakeCases()
    job = await run_import(_job(text), read_rows(text, FileKind.CSV), intake.submit, person_id="p")
    assert [len(rows) for rows in _rows_of(intake)] == [BATCH_ROWS, BATCH_ROWS, 50]
    assert _rows_of(intake) == [
        list(range(2, 102)),
        list(range(102, 202)),
        list(range(202, 252)),
    ]
    assert (job.done, job.created) == (250, 250)


def test_batches_keep_file_order_and_their_size_in_rows_and_bytes() -> None:
    text = _csv(*(_row(n) for n in range(1, 8)))
    job = _job(text)
    rows = list(read_rows(text, FileKind.CSV))
    numbers = [[n for n, _doc in b] for b in batches(rows, job, "p", size=3)]
    assert numbers == [[2, 3, 4], [5, 6, 7], [8]]
    one_row = len(json.dumps(with_defaults(cast(dict[str, Any], rows[0][1]), "p")))
    by_bytes = batches(rows, job, "p", size=100, max_bytes=2 * (one_row + 100) + 10)
    assert [[n for n, _doc in b] for b in by_bytes] == [[2, 3], [4, 5], [6, 7], [8]]
    # Each row as sent: a consent without taken_by was taken by the person importing.
    untaken = list(read_rows(_csv(_row(1, consent_taken_by="")), FileKind.CSV))
    first = next(batches(untaken, job, "person-9"))
    assert first[0][1]["consent"]["taken_by"] == "person-9"


async def test_rows_that_cannot_be_read_are_refused_without_being_sent() -> None:
    doc = json.dumps(csv_row_to_case(dict(_row(1))))
    text = f"{doc}\nnot json\n[1]\n{doc.replace('NGO-0001', 'NGO-0002')}\n"
    intake = FakeIntakeCases()
    job = ImportJob("job-1", "person-1", "cases.jsonl", "u1", 4, T0)
    await run_import(job, read_rows(text, FileKind.JSON_LINES), intake.submit, person_id="p")
    assert _rows_of(intake) == [[1, 4]]
    assert (job.done, job.created, job.refused) == (4, 2, 2)
    assert [(e.row, e.message) for e in job.error_rows()] == [(2, NOT_JSON), (3, NOT_OBJECT)]


def test_each_result_of_a_batch_is_mapped_back_to_its_row() -> None:
    keys = ["k-2", "k-3", "k-5", "k-6"]
    answer = {
        "results": [  # in any order: each result says which row it answers
            {"index": 2, "idempotency_key": "k-5", "outcome": "already_present"},
            {
                "index": 1,
                "idempotency_key": "k-3",
                "outcome": "refused",
                "errors": [{"field": "worker.phone", "message": "bad", "type": "value_error"}],
            },
            {"index": 0, "idempotency_key": "k-2", "outcome": "created", "id": "c-1"},
            {"index": 3, "idempotency_key": "k-6", "outcome": "conflict", "detail": "key reused"},
        ]
    }
    assert batch_results(answer, keys) == [
        RowResult(Outcome.CREATED),
        RowResult(Outcome.REFUSED, (("worker.phone", "bad", "value_error"),)),
        RowResult(Outcome.ALREADY_PRESENT),
        RowResult(Outcome.REFUSED, (("", "key reused", API_PROBLEM),)),
    ]
    known = {"index": 0, "idempotency_key": "k", "outcome": "conflict", "existing_case_id": "c"}
    assert batch_results({"results": [known]}, ["k"]) == [RowResult(Outcome.ALREADY_PRESENT)]
    for wrong in (
        {"results": answer["results"][:3]},  # a row left out
        {"results": [{**r, "index": 0} for r in answer["results"]]},  # one row twice
        {"results": [{**answer["results"][0], "idempotency_key": "k-9"}, *answer["results"][1:]]},
        {"results": [{**r, "outcome": "maybe"} for r in answer["results"]]},
        "Internal Server Error",
    ):
        with pytest.raises(BatchAnswerError):
            batch_results(wrong, keys)


async def test_results_reach_the_job_under_their_row_numbers() -> None:
    bad_phone = "0812-3456"
    text = _csv(*(_row(n, worker_phone=bad_phone) if n in (4, 7) else _row(n) for n in range(1, 9)))
    intake = FakeIntakeCases()
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), intake.submit, person_id="p", batch_size=3
    )
    assert _rows_of(intake) == [[2, 3, 4], [5, 6, 7], [8, 9]]
    assert [(e.row, e.field) for e in job.error_rows()] == [
        (5, "worker.phone"),
        (8, "worker.phone"),
    ]
    assert all(bad_phone not in e.message for e in job.errors)
    assert (job.created, job.refused) == (6, 2)


async def test_a_batch_is_sent_again_whole_while_intake_is_down_then_refused_unavailable() -> None:
    text = _csv(_row(1), _row(2))
    recovering = FakeIntakeCases(fail_first=2)
    sleeps = Sleeps()
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), recovering.submit, person_id="p", sleep=sleeps
    )
    assert job.created == 2
    assert _rows_of(recovering) == [[2, 3]] * 3  # the same rows, the same keys
    assert sleeps.asked == [1.0, 2.0]  # backing off
    down = FakeIntakeCases(fail_first=1000)
    sleeps = Sleeps()
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), down.submit, person_id="p", sleep=sleeps
    )
    assert len(down.batches) == ATTEMPTS  # bounded
    assert sleeps.asked == [1.0, 2.0, 4.0, 8.0]
    assert (job.done, job.refused) == (2, 2)
    assert [(e.row, e.field, e.message, e.type) for e in job.error_rows()] == [
        (2, "", UNAVAILABLE, ROW_PROBLEM),
        (3, "", UNAVAILABLE, ROW_PROBLEM),
    ]


async def test_a_batch_refused_as_a_whole_gives_each_of_its_rows_that_refusal() -> None:
    text = _csv(_row(1), _row(2), _row(3))
    refused = FakeIntakeCases(refuse=403)
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), refused.submit, person_id="p", sleep=_no_sleep
    )
    assert len(refused.batches) == 1  # not tried again
    assert (job.done, job.refused) == (3, 3)
    assert {(e.row, e.message, e.type) for e in job.errors} == {
        (n, "Only NGOs submit cases.", API_PROBLEM) for n in (2, 3, 4)
    }


async def test_a_batch_too_large_for_intake_is_sent_again_in_halves() -> None:
    text = _csv(*(_row(n) for n in range(1, 6)))
    intake = FakeIntakeCases(refuse=413, max_rows=2)
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), intake.submit, person_id="p", sleep=_no_sleep
    )
    assert _rows_of(intake) == [[2, 3, 4, 5, 6], [2, 3], [4, 5, 6], [4], [5, 6]]
    assert (job.done, job.created) == (5, 5)
    # A single row still too large is refused with intake's reason.
    alone = FakeIntakeCases(refuse=413, max_rows=0)
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), alone.submit, person_id="p", batch_size=1
    )
    assert (job.done, job.refused) == (5, 5)
    assert {e.message for e in job.errors} == {"Body too large"}


async def test_progress_is_counted_as_each_batch_is_answered() -> None:
    text = _csv(*(_row(n) for n in range(1, 6)))
    intake = FakeIntakeCases()
    gates = [asyncio.Event() for _ in range(3)]
    sent = asyncio.Queue[int]()

    calls = [0]

    async def slow(items: Sequence[BatchItem]) -> list[RowResult]:
        number = calls[0]
        calls[0] += 1
        await sent.put(number)
        await gates[number].wait()
        return await intake.submit(items)

    job = _job(text)
    running = asyncio.create_task(
        run_import(job, read_rows(text, FileKind.CSV), slow, person_id="p", batch_size=2)
    )
    counts = []
    for number in range(3):
        assert await asyncio.wait_for(sent.get(), 5) >= 0
        counts.append((job.done, job.running))
        gates[number].set()
        await asyncio.sleep(0.01)
        counts.append((job.done, job.running))
    await asyncio.wait_for(running, 5)
    # Each batch's rows are counted as it is answered, while the others are in flight.
    assert counts[:5] == [(0, True), (2, True), (2, True), (4, True), (4, True)]
    assert (job.total, job.done, job.running) == (5, 5, False)


async def test_a_few_batches_are_in_flight_at_once() -> None:
    text = _csv(*(_row(n) for n in range(1, 21)))
    intake = FakeIntakeCases()
    in_flight, most = 0, 0

    async def watched(items: Sequence[BatchItem]) -> list[RowResult]:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return await intake.submit(items)

    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), watched, person_id="p", batch_size=2
    )
    assert most == CONCURRENCY
    assert (job.done, job.created) == (20, 20)


async def test_a_fault_on_one_batch_does_not_stop_the_others() -> None:
    text = _csv(*(_row(n) for n in range(1, 40)))
    intake = FakeIntakeCases()

    async def flaky(items: Sequence[BatchItem]) -> list[RowResult]:
        if any(doc["external_ref"] == "NGO-0005" for _key, doc in items):
            raise RuntimeError("bug")
        return await intake.submit(items)

    job = await asyncio.wait_for(
        run_import(_job(text), read_rows(text, FileKind.CSV), flaky, person_id="p", batch_size=4),
        5,
    )
    assert (job.done, job.created, job.refused) == (39, 35, 4)
    assert [e.row for e in job.error_rows()] == [6, 7, 8, 9]  # the batch of rows 6 to 9
    assert {e.message for e in job.errors} == {FAULT}


async def test_the_error_report_names_row_field_and_problem_but_no_personal_data() -> None:
    bad_phone = "0812-3456-7788"
    text = _csv(_row(1, worker_phone=bad_phone), _row(2))
    job = await run_import(
        _job(text), read_rows(text, FileKind.CSV), FakeIntakeCases().submit, person_id="p"
    )
    translator = Translator(load_catalogs())
    translator.use("en")
    report = error_report_csv(error_report_rows(job, row_error_text(translator.gettext)))
    lines = list(csv.reader(io.StringIO(report)))
    assert lines[0] == ["row", "field", "message"]
    assert lines[1][:2] == ["2", "worker.phone"]
    assert lines[1][2].startswith("Not a valid phone number")
    assert len(lines) == 2
    for value in (bad_phone, NAME, "NGO-0001", "Contoh"):
        assert value not in report
    # Even the kept (English) message of the API has the row's values cut out.
    assert bad_phone not in job.errors[0].message


def test_scrub_cuts_every_value_of_the_row_out_of_a_message() -> None:
    row = {"worker": {"full_name": "Siti Aminah", "phone": "0812"}, "claims": [{"n": 1}]}
    assert scrub("Siti Aminah has phone 0812", row) == "[…] has phone […]"
    assert scrub("field required", row) == "field required"


def test_a_message_that_looks_like_a_formula_stays_text_in_a_spreadsheet() -> None:
    report = error_report_csv([(2, "x", "=HYPERLINK(1)")])
    assert "'=HYPERLINK(1)" in report


def test_the_template_file_is_a_valid_import() -> None:
    rows = list(read_rows(template_csv(), FileKind.CSV))
    assert len(rows) == 1
    assert isinstance(rows[0][1], dict)
    assert rows[0][1]["external_ref"] == EXAMPLE_ROW["external_ref"]


async def test_jobs_are_seen_only_by_their_owner_and_forgotten_a_day_after() -> None:
    now = [T0]
    jobs = ImportJobs(clock=lambda: now[0], max_running_per_person=1)
    job = jobs.new("person-1", "cases.csv", "u", 1)
    assert jobs.get(job.id, "person-2") is None
    assert jobs.get(job.id, "person-1") is job
    assert jobs.busy("person-1")
    assert not jobs.busy("person-2")

    async def work() -> None:
        job.created = 1
        job.finished_at = now[0]

    jobs.start(job, work())
    await asyncio.sleep(0.01)
    assert not job.running
    assert not jobs.busy("person-1")
    now[0] = T0 + timedelta(hours=25)
    assert jobs.of_person("person-1") == []


async def test_a_job_that_fails_is_ended_and_says_so() -> None:
    jobs = ImportJobs(clock=lambda: T0)
    job = jobs.new("person-1", "cases.csv", "u", 5)

    async def broken() -> None:
        raise RuntimeError("bug")

    jobs.start(job, broken())
    await asyncio.sleep(0.01)
    assert not job.running
    assert job.stopped is not None


def test_a_period_reads_both_dates_and_names_bad_ones() -> None:
    period = read_period("2026-01-01", "2026-01-31", str)
    assert period.errors == {}
    assert period.api_params() == {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
    assert period.query() == "?from=2026-01-01&to=2026-01-31"
    assert read_period(None, "", str).api_params() == {}
    assert read_period(None, "", str).query() == ""
    assert set(read_period("31/01/2026", "", str).errors) == {"from"}
    assert set(read_period("2026-02-01", "2026-01-01", str).errors) == {"to"}


# --- the pages, in-process --------------------------------------------------------------

REPORT: dict[str, Any] = {
    "cases": 12000,
    "cases_by": {
        "claim_type": {"unpaid_wages": 9, "abuse": None},  # suppressed
        "employment_country": {"HK": 7, "SG": 4, "unknown": 1},
        "organisation": {"ngo-a": 12000},
        "status": {"referred": 5, "closed": 2, "submitted": 0},
    },
    "referrals": {
        "offered": 6,
        "accepted": 4,
        "declined": 1,
        "median_hours_submission_to_acceptance": 5.5,
    },
    "closed_by_outcome": {},
    "amounts_recovered": {"HKD": "12000.10", "SGD": "300.00"},
    "sms": {"sent": 3, "delivered": 2},
    "breakdowns": {
        "gender": {
            "dimensions": ["gender"],
            "withheld": False,
            "groups": [
                {
                    "group": {"gender": "female"},
                    "cases": 9,
                    "suppressed": False,
                    "median_days_submission_to_acceptance": 2.5,
                    "amounts_recovered": {"HKD": "12000.10"},
                },
                {
                    "group": {"gender": "male"},
                    "cases": None,
                    "suppressed": True,
                    "median_days_submission_to_acceptance": None,
                    "amounts_recovered": None,
                },
            ],
        },
        "age_band": {"dimensions": ["age_band"], "withheld": True, "groups": []},
        "gender_sector_disability": {
            "dimensions": ["gender", "sector", "disability"],
            "withheld": False,
            "groups": [
                {
                    "group": {"gender": "female", "sector": "domestic_work", "disability": "yes"},
                    "cases": 6,
                    "suppressed": False,
                    "median_days_submission_to_acceptance": 1.5,
                    "amounts_recovered": {},
                },
                {
                    "group": {"gender": "male", "sector": "construction", "disability": "no"},
                    "cases": None,
                    "suppressed": True,
                    "median_days_submission_to_acceptance": None,
                    "amounts_recovered": None,
                },
            ],
        },
    },
    "suppression": {
        "min_cell": 5,
        "shown_as": "<5",
        "suppressed_counts": {"cases_by.claim_type": ["abuse"]},
    },
    "period": {"from": None, "to": None},
}


class FakeIntake:
    """intake's API as the pages call it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.callers: list[PersonClaims] = []
        self.timeouts: list[float | None] = []
        self.cases = FakeIntakeCases()
        self.down = False
        #: Whole-batch answers to give first: an HTTP status or "down".
        self.batch_failures: list[int | str] = []

    async def call(
        self,
        person: PersonClaims,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
    ) -> Answer:
        self.calls.append((method, path, dict(params or {})))
        self.callers.append(person)
        self.timeouts.append(timeout_seconds)
        if self.down:
            raise ServiceUnavailableError("intake")
        if path == "/v1/reports/indicators":
            if (params or {}).get("format") == "csv":
                text = "indicator,dimension,value\r\ncases,,12000\r\n"
                return Answer(200, text, httpx.Headers({"content-type": "text/csv"}))
            return Answer(200, REPORT, httpx.Headers())
        if method == "POST" and path == "/v1/cases/batch":
            if self.batch_failures:
                failure = self.batch_failures.pop(0)
                if failure == "down":
                    raise ServiceUnavailableError("intake")
                status = int(failure)
                raise ApiProblemError(
                    status,
                    "Payload Too Large" if status == 413 else "Error",
                    "Body too large" if status == 413 else None,
                    [FieldProblem("cases", "too many", "too_long")] if status == 422 else [],
                )
            assert headers is None  # each row's key is in the body
            self.cases.batches.append([item["idempotency_key"] for item in json["cases"]])
            return Answer(
                200, self.cases.answer(json), httpx.Headers({"content-type": "application/json"})
            )
        raise AssertionError(f"unexpected call {method} {path}")


def console_app(intake: FakeIntake, person: Person, language: str = "en") -> FastAPI:
    """The programme and people pages with in-memory stores and `person` signed in."""
    from lintas_console.entrypoints import pages_people

    client = cast(ServiceClient, intake)
    return pages_app(
        [pages_programme.router, pages_people.router], person, client, client, language
    )


PROGRAMME_PERSON = Person("person-prog", "ngo-a", "prog@ngo.test", Role.PROGRAMME, "Prog")


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
async def browser(intake: FakeIntake) -> AsyncIterator[httpx.AsyncClient]:
    app = console_app(intake, PROGRAMME_PERSON)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield client


async def test_the_indicators_page_shows_charts_and_tables_of_the_period(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    page = await browser.get("/indicators", params={"from": "2026-01-01", "to": "2026-01-31"})
    assert page.status_code == 200
    assert intake.calls[-1] == (
        "GET",
        "/v1/reports/indicators",
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
    )
    html = page.text
    # One organisation: no chart of it; no outcomes; one chart of the workers' gender.
    assert html.count('<svg class="chart"') == 6
    assert 'aria-labelledby="chart-status-title chart-status-desc"' in html
    assert "<td>Hong Kong</td><td>7</td>" in html
    assert "<td>Unknown</td><td>1</td>" in html
    assert "12,000" in html  # numbers in the reader's locale
    assert "HK$12,000.10" in html  # money per currency, never a float
    assert 'href="/indicators.csv?from=2026-01-01&amp;to=2026-01-31"' in html
    assert "style=" not in html


async def test_the_indicators_page_breaks_cases_down_by_who_the_workers_are(
    browser: httpx.AsyncClient,
) -> None:
    html = (await browser.get("/indicators")).text
    assert "<td>Abuse</td><td>&lt;5</td>" in html  # a suppressed count of the older tables
    assert '<h2 id="h-workers">Who the workers are</h2>' in html
    assert 'data-testid="suppression-note"' in html
    assert "a count below 5 cases is shown as “&lt;5”" in html
    assert "<td>Female</td><td>9</td><td>2.5</td><td>HK$12,000.10</td>" in html
    assert "<td>Male</td><td>&lt;5</td><td>—</td><td>—</td>" in html
    assert 'id="chart-workers-gender"' in html
    # The crossing: women domestic workers with a disability, as a table.
    assert (
        "<td>Female</td><td>Domestic work</td><td>With a disability</td><td>6</td><td>1.5</td>"
        in html
    )
    assert "<td>Male</td><td>Construction</td><td>Without a disability</td><td>&lt;5</td>" in html
    assert "Not shown: too few cases to show without singling anyone out." in html
    assert "style=" not in html


async def test_the_indicators_csv_is_intakes_for_the_same_period(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    answer = await browser.get("/indicators.csv", params={"from": "2026-01-01"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        'attachment; filename="lintas-indicators-from-2026-01-01.csv"'
    )
    assert answer.text.startswith("indicator,dimension,value")
    assert intake.calls[-1][2] == {"from": "2026-01-01T00:00:00Z", "format": "csv"}


async def test_a_bad_date_is_named_beside_its_field_and_intake_is_not_asked(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    page = await browser.get("/indicators", params={"from": "soon"})
    assert page.status_code == 422
    assert 'id="f-from-error"' in page.text
    assert intake.calls == []


async def test_intake_down_gives_a_clear_message_and_keeps_the_period(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    intake.down = True
    page = await browser.get("/indicators", params={"from": "2026-01-01"})
    assert page.status_code == 503
    assert "cannot reach the case service" in page.text
    assert 'value="2026-01-01"' in page.text


async def test_other_roles_do_not_see_the_programme_pages(intake: FakeIntake) -> None:
    lawyer = Person("person-law", "legal-hk", "law@hk.test", Role.LAWYER, "Law")
    transport = httpx.ASGITransport(app=console_app(intake, lawyer))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/indicators", "/indicators.csv", "/imports"):
            assert (await client.get(path)).status_code == 404


async def _wait_until_finished(browser: httpx.AsyncClient, job_path: str) -> httpx.Response:
    for _ in range(200):
        page = await browser.get(job_path)
        if "Refresh" not in page.headers:
            return page
        await asyncio.sleep(0.01)
    raise AssertionError("the import did not finish")


async def _upload(
    browser: httpx.AsyncClient, name: str, content: bytes, csrf: str = "csrf-1"
) -> httpx.Response:
    return await browser.post(
        "/imports", data={"csrf_token": csrf}, files={"file": (name, content, "text/csv")}
    )


async def test_an_upload_is_imported_in_the_background_with_its_progress(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    content = _csv(_row(1), _row(2, worker_phone="0812-3456"), _row(3)).encode()
    started = await _upload(browser, "cases.csv", content)
    assert started.status_code == 303
    job_path = started.headers["location"]
    assert job_path.startswith("/imports/")
    page = await _wait_until_finished(browser, job_path)
    assert "3 of 3 rows" in page.text
    assert '<dd data-testid="import-created">2</dd>' in page.text
    assert '<dd data-testid="import-refused">1</dd>' in page.text
    assert "Not a valid phone number" in page.text
    assert "0812-3456" not in page.text
    report = await browser.get(job_path + "/errors.csv")
    assert report.headers["content-disposition"].startswith("attachment;")
    assert list(csv.reader(io.StringIO(report.text)))[1][:2] == ["3", "worker.phone"]
    # The same file again: every row recognised, nothing made twice.
    again = await _upload(browser, "cases.csv", content)
    page = await _wait_until_finished(browser, again.headers["location"])
    assert '<dd data-testid="import-already-present">2</dd>' in page.text
    assert len(intake.cases.by_key) == 2
    listing = await browser.get("/imports")
    assert listing.text.count("cases.csv</a>") == 2


CLAIMS = PersonClaims("ngo-a", "person-prog", ClaimRole.PROGRAMME)


def _submit(intake: FakeIntake) -> Any:
    return submitter(cast(Console, SimpleNamespace(intake=intake)), CLAIMS)


async def test_the_submitter_posts_a_batch_as_the_person_and_maps_each_result() -> None:
    intake = FakeIntake()
    good = with_defaults(csv_row_to_case(dict(_row(1))), "p")
    bad = with_defaults(csv_row_to_case(dict(_row(2, worker_phone="0812"))), "p")
    results = await _submit(intake)([("k-2", good), ("k-3", bad), ("k-2", good)])
    assert intake.calls == [("POST", "/v1/cases/batch", {})]
    assert intake.callers == [CLAIMS]  # the person's identity, as for every call
    assert intake.timeouts == [BATCH_TIMEOUT_SECONDS]
    assert intake.cases.batches == [["k-2", "k-3", "k-2"]]
    assert [r.outcome for r in results] == [
        Outcome.CREATED,
        Outcome.REFUSED,
        Outcome.ALREADY_PRESENT,
    ]
    assert results[1].problems[0][:1] == ("worker.phone",)


@pytest.mark.parametrize("failure", ["down", 408, 429, 500])
async def test_the_submitter_asks_to_try_a_batch_again_when_intake_cannot_take_it(
    failure: int | str,
) -> None:
    intake = FakeIntake()
    intake.batch_failures = [failure]
    with pytest.raises(TryAgainError):
        await _submit(intake)([("k-2", {"external_ref": "A"})])


@pytest.mark.parametrize(
    ("status", "message"), [(400, "Error"), (413, "Body too large"), (422, "Error")]
)
async def test_the_submitter_names_a_refusal_of_the_whole_batch(status: int, message: str) -> None:
    intake = FakeIntake()
    intake.batch_failures = [status]
    with pytest.raises(BatchRefusedError) as refused:
        await _submit(intake)([("k-2", {"external_ref": "A"})])
    assert refused.value.status == status
    assert refused.value.problems == (("", message, API_PROBLEM),)


async def test_an_upload_whose_batch_is_refused_as_a_whole_reports_each_row(
    browser: httpx.AsyncClient, intake: FakeIntake
) -> None:
    intake.batch_failures = [413]  # one row: nothing to halve
    started = await _upload(browser, "cases.csv", _csv(_row(1)).encode())
    page = await _wait_until_finished(browser, started.headers["location"])
    assert "1 of 1 rows" in page.text
    assert '<dd data-testid="import-refused">1</dd>' in page.text
    assert "Body too large" in page.text
    assert intake.cases.batches == []


async def test_a_json_lines_upload_is_imported(browser: httpx.AsyncClient) -> None:
    doc = csv_row_to_case(dict(_row(7)))
    content = (json.dumps(doc) + "\n" + "{broken\n").encode()
    started = await _upload(browser, "cases.jsonl", content)
    page = await _wait_until_finished(browser, started.headers["location"])
    assert "2 of 2 rows" in page.text
    assert "This line is not valid JSON." in page.text


async def test_a_running_import_page_refreshes_itself_until_asked_not_to(
    browser: httpx.AsyncClient,
) -> None:
    jobs = ImportJobs()
    job = jobs.new(PROGRAMME_PERSON.id, "big.csv", "u", 10)
    app = cast(Any, browser._transport).app
    app.state.import_jobs = jobs
    page = await browser.get(f"/imports/{job.id}")
    assert page.headers["refresh"] == "2"
    assert "0 of 10 rows" in page.text
    still = await browser.get(f"/imports/{job.id}?still=1")
    assert "refresh" not in still.headers


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("cases.xlsx", b"PK\x03\x04", 422, "This is not a CSV or JSON Lines file"),
        ("cases.csv", b"\xff\xfe\x00\x00", 422, "not UTF-8 text"),
        ("cases.csv", HEADER.encode() + b"\n", 422, "no rows"),
        ("cases.csv", b"x" * (MAX_UPLOAD_BYTES + 10), 413, "larger than 5 MB"),
    ],
)
async def test_a_file_that_cannot_be_imported_is_refused_beside_the_field(
    browser: httpx.AsyncClient, name: str, content: bytes, status: int, message: str
) -> None:
    answer = await _upload(browser, name, content)
    assert answer.status_code == status
    assert 'id="f-file-error"' in answer.text
    assert message in answer.text


async def test_an_upload_without_the_forms_token_is_refused(browser: httpx.AsyncClient) -> None:
    answer = await _upload(browser, "cases.csv", _csv(_row(1)).encode(), csrf="forged")
    assert answer.status_code == 403


async def test_nobody_else_sees_an_import(browser: httpx.AsyncClient, intake: FakeIntake) -> None:
    started = await _upload(browser, "cases.csv", _csv(_row(1)).encode())
    job_path = started.headers["location"]
    await _wait_until_finished(browser, job_path)
    other = Person("person-2", "ngo-a", "other@ngo.test", Role.PROGRAMME, "Other")
    app = console_app(intake, other)
    app.state.import_jobs = cast(Any, browser._transport).app.state.import_jobs
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get(job_path)).status_code == 404
        assert (await client.get(job_path + "/errors.csv")).status_code == 404
