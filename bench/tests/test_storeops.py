"""The bench reads each service's own store-command counts from its /metrics text and
turns them into commands per case, with the idle background taken off."""

from __future__ import annotations

import pytest
from lintas_bench import storeops
from lintas_shared.metrics import STORE_COMMANDS
from prometheus_client import generate_latest

pytestmark = pytest.mark.unit


def test_reads_the_counts_a_service_exposes() -> None:
    before = storeops.parse_service_commands(generate_latest().decode())
    STORE_COMMANDS.labels("bench_probe_cases", "findAndModify").inc(3)
    STORE_COMMANDS.labels("bench_probe_cases", "find").inc()
    after = storeops.parse_service_commands(generate_latest().decode())

    assert storeops.diff(after, before) == {
        "bench_probe_cases.findAndModify": 3,
        "bench_probe_cases.find": 1,
    }


def test_per_case_takes_the_idle_rate_off() -> None:
    work = {"cases.update": 40, "timers.find": 30}
    idle = {"timers.find": 10}  # 10 in 10 s idle: 20 of the 30 in 20 s were background
    assert storeops.per_case(work, 20.0, idle, 10.0, cases=10) == {
        "cases.update": 4.0,
        "timers.find": 1.0,
    }
