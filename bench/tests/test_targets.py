"""The report's issue-13 target lines: met, missed (by how much), or not measured."""

from __future__ import annotations

import pytest
from lintas_bench.report import target_lines

pytestmark = pytest.mark.unit


def run(commands: float, rate: float, services_ms: float, store_ms: float, rows: float) -> dict:
    return {
        "store_commands": {"total_per_case": commands},
        "pipeline": {
            "highest_sustained_rate": rate,
            "steps": [
                {
                    "rate": rate,
                    "cpu_ms_per_case": {"lintas services": services_ms, "ferretdb": store_ms},
                }
            ],
        },
        "import": {"importer": {"rows_per_second": rows}},
        "baselines": {"minimal_closed": {"completed_per_second_in_window": 40.0}},
    }


def test_each_target_says_met_or_by_how_much_it_was_missed() -> None:
    lines = target_lines(run(14.0, 120.0, 6.0, 8.0, 800.0))
    assert (
        lines[1] == "  store commands per case: 14.0, target 12: missed by 2.0 (1.17 of the target)"
    )
    assert lines[2] == "  sustained cases/s (p99 < 1 s): 120.0/s, target 100/s: met"
    assert lines[3] == "  CPU per case, services and store: 14.0 ms, target 15 ms: met"
    assert lines[4] == (
        "  bulk import rows/s: 800.0/s, target 1,000/s: missed by 200.0/s (0.80 of the target)"
    )
    assert lines[5] == "  sustained rate against (c)'s closed loop 40.0/s: met"


def test_a_part_the_run_skipped_is_reported_as_not_measured() -> None:
    lines = target_lines({"store_commands": {"total_per_case": 10.0}})
    assert lines[1] == "  store commands per case: 10.0, target 12: met"
    assert lines[2] == "  sustained cases/s (p99 < 1 s): not measured in this run (target 100/s)"
    assert lines[4] == "  bulk import rows/s: not measured in this run (target 1,000/s)"
