"""The report's import lines: the live cases submitted while the import ran."""

from __future__ import annotations

from typing import Any

import pytest
from lintas_bench.bulk_import import MemoryOverTime
from lintas_bench.report import render

pytestmark = pytest.mark.unit


def results(live: dict[str, Any] | None) -> dict[str, Any]:
    imported: dict[str, Any] = {
        "rows": 2000,
        "broken_rows": 0,
        "concurrency": 4,
        "seconds": 2.0,
        "importer": {"rows_per_second": 1000.0, "created": 2000, "already_present": 0},
        "importer_peak_rss_mib": 60.0,
        "services_peak_rss_mib": {"intake": 150.0},
    }
    if live is not None:
        imported["live"] = live
    return {"config": {"step_seconds": 60, "threshold_ms": 1000}, "import": imported}


def test_the_live_cases_during_the_import_are_reported_with_their_latency() -> None:
    live = {
        "interval_s": 0.5,
        "errors": {"HTTP 503": 1},
        "count": 7,
        "p50_ms": 41.25,
        "p95_ms": 80.0,
        "p99_ms": 95.5,
        "max_ms": 97.0,
        "mean_ms": 50.0,
    }
    text = render(results(live))
    assert (
        "  live cases meanwhile (one `POST /v1/cases` every 0.5 s, as a caseworker's): "
        "7 accepted, p50 41.2 ms, p99 95.5 ms, max 97.0 ms; errors: HTTP 503 1"
    ) in text


def test_an_import_without_live_cases_prints_no_such_line() -> None:
    assert "live cases meanwhile" not in render(results(None))


def test_the_memory_through_the_import_is_reported_by_quarter() -> None:
    imported = results(None)
    imported["import"]["rss_mib_by_quarter"] = {
        "importer": [60.0, 61.5, 61.5, 62.0],
        "intake": [150.0, 170.25, 180.0, 181.0],
    }
    assert (
        "  memory at a quarter, half, three quarters and the end of the import (RSS, MiB): "
        "importer 60.0, 61.5, 61.5, 62.0; intake 150.0, 170.2, 180.0, 181.0"
    ) in render(imported)
    assert (
        "  memory over the import's second half: importer +0.5 MiB (+0.8%), "
        "intake +10.8 MiB (+6.3%)"
    ) in render(imported)


def test_memory_over_time_takes_the_last_sample_at_or_before_each_quarter() -> None:
    mib = 1024 * 1024
    grown = iter(range(1, 100))
    memory = MemoryOverTime({"intake": 1}, every=1.0, rss=lambda _pid: next(grown) * mib)
    for elapsed in (0.0, 0.5, 1.0, 2.5, 3.0, 4.0):  # 0.5 and 3.0: within a second of the last
        memory.sample(elapsed)
    # Kept: 0.0 -> 1, 1.0 -> 2, 2.5 -> 3, 4.0 -> 4 MiB; the quarters are at 1, 2, 3 and 4 s.
    assert memory.quarters() == {"intake": [2.0, 2.0, 3.0, 4.0]}
    assert memory.peak("intake") == 4.0
    assert MemoryOverTime({"intake": 1}, rss=lambda _pid: mib).quarters() == {}
