"""The report's import lines: the live cases submitted while the import ran."""

from __future__ import annotations

from typing import Any

import pytest
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
