"""The report's store-command count at the highest sustained rate, beside the count at
2 cases a second."""

from __future__ import annotations

from typing import Any

import pytest
from lintas_bench.report import render

pytestmark = pytest.mark.unit

LATENCY = {"count": 10, "p50_ms": 50.0, "p95_ms": 90.0, "p99_ms": 99.0, "max_ms": 120.0}


def step(rate: float, commands: float | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "rate": rate,
        "stored_cases_before": 0,
        "requested": 10,
        "accepted": 10,
        "errors": {},
        "http": LATENCY,
        "offered": LATENCY,
        "sms": LATENCY,
        "missing_offered": 0,
        "missing_sms": 0,
        "cpu_ms_per_case": {"lintas services": 15.0, "ferretdb": 9.0, "kafka": 0.5},
        "load_average": 1.0,
        "verdict": {"sustained": True, "reasons": []},
    }
    if commands is not None:
        found["store_commands"] = {"per_case": {"find": commands}, "total_per_case": commands}
    return found


def results(steps: list[dict[str, Any]], top: float) -> dict[str, Any]:
    return {
        "config": {"step_seconds": 60, "threshold_ms": 1000},
        "pipeline": {"steps": steps, "highest_sustained_rate": top},
        "store_commands": {"per_case": {"find": 17.3}, "total_per_case": 17.3, "cases": 20},
    }


def test_the_count_at_the_highest_sustained_rate_is_printed_beside_the_calibrated_one() -> None:
    text = render(results([step(40, 13.4), step(60, 11.2)], 60))
    assert (
        "Store commands per case at 60/s: 11.2, what a batch's cases ask side by side being "
        "one command (at 2/s, where a batch holds one case: 17.3, below)"
    ) in text


def test_a_run_without_the_step_count_prints_no_such_line() -> None:
    text = render(results([step(60, None)], 60))
    assert "Store commands per case at" not in text
    assert "Store commands per case (server-side count over 20 cases" in text
