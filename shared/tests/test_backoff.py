"""Retry waits: exponential, capped, and spread by jitter."""

from __future__ import annotations

import pytest
from lintas_shared.backoff import backoff_seconds
from lintas_shared.consumer import RetryPolicy

pytestmark = pytest.mark.unit


def test_the_wait_doubles_between_half_and_all_of_its_ceiling_up_to_the_cap() -> None:
    assert [backoff_seconds(0.2, n, 5.0, lambda: 1.0) for n in (1, 2, 3, 6, 9)] == pytest.approx(
        [0.2, 0.4, 0.8, 5.0, 5.0]
    )
    assert [backoff_seconds(0.2, n, 5.0, lambda: 0.0) for n in (1, 2, 3, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 2.5]
    )


def test_processes_failing_together_wait_different_times() -> None:
    waits = [RetryPolicy().delay(3) for _ in range(50)]
    assert all(0.4 <= wait <= 0.8 for wait in waits)
    assert len(set(waits)) > 40
