"""A clock for code that takes `clock: Callable[[], float]` (monotonic seconds)."""

from __future__ import annotations


class SteppedClock:
    """Monotonic seconds that move only when a test moves them (`now += ...`)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
