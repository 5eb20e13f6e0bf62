"""`make faults`, reduced: the whole pipeline under kills, restarts, a rewind and poison.

Its own Kafka, FerretDB and two instances of each service on ports 25100-25115 (not the
e2e stack's), a fixed seed, 30 cases, one SIGKILL per service process, and the issue's
poison including a 2 MB record (over the producer's limit: parked as a truncated copy).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lintas_faults.cli import Options, run

from tests.support.servers import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_nothing_lost_or_doubled_under_faults(tmp_path: Path) -> None:
    table = run(
        Options(
            cases=30,
            seed=6,
            kills=1,
            concurrency=4,
            rate=0.3,
            base_port=25100,
            big_poison_bytes=2_000_000,
            settle_seconds=300,
            quiet_seconds=5,
            per_case_seconds=240,
            out_dir=tmp_path,
            cache_dir=REPO_ROOT / ".lintas" / "cache",
        )
    )
    print(table.render())
    assert table.acknowledged == 30, table.examples
    # Every 4th case was closed at once: each handled in order everywhere.
    assert table.closed_acknowledged == table.closed_requested == 8, table.examples
    assert table.closed_in_order == 8, table.examples
    assert table.lost_total == 0, table.examples
    assert table.duplicates_total == 0, table.examples
    assert table.dlq_matching_poison == table.dlq_expected, table.examples
    assert table.dlq_unexpected == 0, table.examples
    assert table.passed, table.chaos
