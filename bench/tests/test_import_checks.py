"""The bulk import's outcome checks, and its child processes (no servers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lintas_bench import cli
from lintas_bench.bulk_import import misreported_rows
from lintas_bench.children import kill_leftovers, reap, spawn
from lintas_bench.config import from_args
from lintas_bench.observe import Observer

pytestmark = pytest.mark.unit


def _report(path: Path, lines: list[tuple[int, str]]) -> Path:
    path.write_text("row,field,message\n" + "".join(f"{r},{f},bad\n" for r, f in lines))
    return path


def test_a_report_naming_every_broken_row_and_field_passes(tmp_path: Path) -> None:
    report = _report(tmp_path / "r.csv", [(4, "worker.phone"), (7, "employment.country")])
    assert misreported_rows(report, {4: "worker.phone", 7: "employment.country"}) == []


def test_a_missing_row_a_wrong_field_and_an_extra_row_are_each_caught(tmp_path: Path) -> None:
    report = _report(tmp_path / "r.csv", [(4, "worker.name"), (9, "worker.phone")])
    bad = {4: "worker.phone", 7: "employment.country"}
    assert misreported_rows(report, bad) == [4, 7, 9]
    assert misreported_rows(tmp_path / "none.csv", bad) == [4, 7]


def test_the_import_options_are_read() -> None:
    config = from_args(["--import-rows", "10000", "--import-bad-every", "33", "--import-rerun"])
    assert (config.import_rows, config.import_bad_every, config.import_rerun) == (10000, 33, True)
    assert (from_args([]).import_bad_every, from_args([]).import_rerun) == (0, False)


async def test_a_child_left_running_is_killed_at_the_end_and_a_collected_one_is_not() -> None:
    collected = await spawn(sys.executable, "-c", "pass")
    await reap(collected)
    left = await spawn(sys.executable, "-c", "import time; time.sleep(60)")
    assert kill_leftovers() == [left.pid]
    assert kill_leftovers() == []


async def test_the_import_is_followed_through_the_pipeline_until_its_last_sms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    observer = Observer("127.0.0.1:1")  # never started: the test fills what it saw
    observer.offered, observer.sms = {"earlier": 1.0}, {"earlier": 2.0}
    before = (len(observer.offered), len(observer.sms))
    observer.offered |= {"c1": 101.0, "c2": 103.0}
    observer.sms |= {"c1": 102.0, "c2": 105.0}
    imported = {"importer": {"created": 2}}

    found = await cli._import_end_to_end(observer, before, 100.0, imported)

    assert found["offered"] == found["sms"] == 2
    assert (found["offered_last_after_s"], found["sms_last_after_s"]) == (3.0, 5.0)
    assert (found["offered_rows_per_second"], found["sms_rows_per_second"]) == (0.7, 0.4)

    # One SMS never comes: the wait ends once nothing has come for a while.
    monkeypatch.setattr(cli, "IMPORT_QUIET_SECONDS", 0.0)
    imported = {"importer": {"created": 3}}
    found = await cli._import_end_to_end(observer, before, 100.0, imported)
    assert (found["offered"], found["sms"]) == (2, 2)
