"""Pure arithmetic of the benchmark: percentiles, arrival schedules, the sustained-rate rule.

Nothing here does I/O or reads a clock, so it is unit-tested exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Arrivals = Literal["uniform", "poisson"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by linear interpolation between closest ranks.

    The same definition as numpy's default ("linear"): p0 is the minimum, p100 the
    maximum, p50 of an even count the mean of the middle two. None for no values.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencySummary:
    """Count and percentiles of a set of latencies, in milliseconds."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None


def summarise(seconds: Sequence[float]) -> LatencySummary:
    """Summarise latencies given in seconds as milliseconds (rounded to 0.1 ms)."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000.0, 1)

    mean = sum(seconds) / len(seconds) if seconds else None
    return LatencySummary(
        count=len(seconds),
        p50_ms=ms(percentile(seconds, 50)),
        p95_ms=ms(percentile(seconds, 95)),
        p99_ms=ms(percentile(seconds, 99)),
        max_ms=ms(max(seconds) if seconds else None),
        mean_ms=ms(mean),
    )


def open_loop_schedule(
    rate: float, duration: float, arrivals: Arrivals = "uniform", seed: int = 0
) -> list[float]:
    """Send times (seconds from the start of a step) for `rate` arrivals a second.

    Open loop: the times are fixed before the step starts and never depend on how fast
    the system answers. "uniform" spaces arrivals exactly 1/rate apart (the first at 0);
    "poisson" draws exponential gaps from a seeded generator, so a run can be repeated.
    Every time is within [0, duration).
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    if arrivals == "uniform":
        count = math.ceil(rate * duration - 1e-9)
        return [i / rate for i in range(count)]
    generator = random.Random(seed)
    times: list[float] = []
    now = 0.0
    while True:
        if now >= duration:
            return times
        times.append(now)
        now += generator.expovariate(rate)


@dataclass(frozen=True)
class StepVerdict:
    """Whether one load step met the bar, and if not, why."""

    rate: float
    sustained: bool
    reasons: tuple[str, ...]


def judge_step(
    *,
    rate: float,
    requested: int,
    accepted: int,
    errors: int,
    missing: int,
    p99_ms: Sequence[float | None],
    threshold_ms: float,
    duration_s: float,
    required_duration_s: float,
    aborted: bool = False,
) -> StepVerdict:
    """Judge a step: every request accepted, every case completed, and every p99 in
    `p99_ms` (one per measured end point) under `threshold_ms`, for long enough, and
    not stopped early because too many cases were already late."""
    reasons: list[str] = []
    if aborted:
        reasons.append("stopped early: over 2% of its cases already later than the bar")
    if duration_s + 1e-9 < required_duration_s:
        reasons.append(f"ran {duration_s:g}s < {required_duration_s:g}s")
    if requested == 0:
        reasons.append("no requests")
    if errors:
        reasons.append(f"{errors} errors")
    if accepted < requested and not errors:
        reasons.append(f"{requested - accepted} not accepted")
    if missing:
        reasons.append(f"{missing} cases incomplete")
    for p99 in p99_ms:
        if p99 is None:
            reasons.append("no latency measured")
        elif p99 >= threshold_ms:
            reasons.append(f"p99 {p99:.0f} ms >= {threshold_ms:.0f} ms")
    return StepVerdict(rate, not reasons, tuple(dict.fromkeys(reasons)))


def highest_sustained(verdicts: Sequence[StepVerdict]) -> float | None:
    """The highest rate at which every step up to and including it was sustained.

    A rate that passed only after a lower one failed does not count: the ladder stops
    counting at the first failure, because after it a backlog distorts what follows.
    """
    best: float | None = None
    for verdict in sorted(verdicts, key=lambda v: v.rate):
        if not verdict.sustained:
            break
        best = verdict.rate
    return best


def next_rates(base: Sequence[float], factor: float, limit: float) -> list[float]:
    """The configured ladder, then steps of `factor` above its top, up to `limit`."""
    if factor <= 1.0:
        raise ValueError("factor must be above 1")
    rates = sorted(set(base))
    if not rates:
        return []
    top = rates[-1]
    while top * factor <= limit:
        top = round(top * factor, 3)
        rates.append(top)
    return [r for r in rates if r <= limit]


def bisect_rate(passed: float | None, failed: float, granularity: float = 0.5) -> float | None:
    """The next rate to try between the highest that passed and the lowest that failed,
    on a grid of `granularity`; None when no grid point lies strictly between them."""
    low = passed or 0.0
    middle = round((low + failed) / 2.0 / granularity) * granularity
    if middle <= low + 1e-9 or middle >= failed - 1e-9 or middle <= 0:
        return None
    return middle
