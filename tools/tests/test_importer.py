"""The bulk importer's file handling (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lintas_intake.domain.submission import CaseSubmission
from lintas_shared.case_rows import csv_row_to_case
from lintas_tools.import_samples import GOOD_ROW, write_import_csv
from lintas_tools.importer import (
    ImportReport,
    _batch_body,
    _batches,
    _Row,
    count_rows,
    read_rows,
)

pytestmark = pytest.mark.unit


def test_a_csv_row_becomes_a_valid_case_document() -> None:
    doc = csv_row_to_case({**GOOD_ROW, "external_ref": "NGO-1", "worker_home_region": ""})
    submission = CaseSubmission.model_validate(doc)
    assert submission.external_ref == "NGO-1"
    assert submission.claims[0].amount is not None
    assert submission.claims[0].amount.value == "12000.00"
    assert [p.value for p in submission.consent.purposes] == ["legal_referral", "sms_updates"]
    assert "home_region" not in doc["worker"]


def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    bad = write_import_csv(path, rows=10, bad_every=5, prefix="T")
    rows = list(read_rows(path))
    assert [n for n, _ in rows] == list(range(2, 12))
    assert set(bad) == {6, 11}


def test_jsonl_lines_that_are_not_json_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"external_ref": "A"}) + "\n{broken\n[1]\n")
    rows = list(read_rows(path))
    assert rows[0] == (1, {"external_ref": "A"})
    assert rows[1][0] == 2
    assert str(rows[1][1]).startswith("not JSON")
    assert rows[2] == (3, "not a JSON object")


def test_a_batch_body_carries_each_row_with_the_key_of_its_content() -> None:
    docs = [{"external_ref": "B", "worker": {"name": "Siti Rahayu"}}, {"external_ref": "A"}]
    batch = next(_batches(iter(enumerate(docs, 2)), ImportReport(), size=10))
    body = json.loads(_batch_body(batch))
    assert [item["case"] for item in body["cases"]] == docs
    keys = [item["idempotency_key"] for item in body["cases"]]
    # The key is the hash of the row's content, whatever its fields' order: the same row
    # gets the same key in every run, so importing a file again creates nothing.
    assert (
        keys[0]
        == _Row.of(9, {"worker": {"name": "Siti Rahayu"}, "external_ref": "B"}).idempotency_key
    )
    assert keys[0] != keys[1]
    assert all(key.startswith("import-") and len(key) == 47 for key in keys)


def test_a_jsonl_row_with_nan_is_reported_and_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"external_ref": "A"}\n{"external_ref": "B", "amount": NaN}\n')
    report = ImportReport()
    batches = list(_batches(read_rows(path), report, size=10))
    assert [[row.number for row in batch] for batch in batches] == [[1]]
    assert report.rejected == 1
    assert report.errors == [(2, "", "not JSON: NaN and Infinity are not JSON numbers")]


def test_rows_are_counted_as_they_are_read(tmp_path: Path) -> None:
    csv_path = tmp_path / "cases.csv"
    write_import_csv(csv_path, rows=7, bad_every=3, prefix="C")
    jsonl_path = tmp_path / "cases.jsonl"
    jsonl_path.write_text('{"external_ref": "A"}\n\n{broken\n[1]\n')
    for path in (csv_path, jsonl_path):
        assert count_rows(path) == len(list(read_rows(path)))
    assert (count_rows(csv_path), count_rows(jsonl_path)) == (7, 3)
