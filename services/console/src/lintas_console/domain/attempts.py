"""Limits on failed sign-ins, per account and per address (pure; the clock is passed in)."""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta


class AttemptLimiter:
    """At most `limit` failures per key within `window`; the oldest keys are forgotten
    first when `max_keys` are tracked, so a flood of addresses cannot grow it unbounded."""

    def __init__(self, limit: int, window: timedelta, max_keys: int = 100_000) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        failures = self._failures.get(key, deque())
        while failures and now - failures[0] >= self._window:
            failures.popleft()
        return failures

    def blocked(self, key: str, now: datetime) -> bool:
        """Whether this key has used up its failures for now."""
        return len(self._recent(key, now)) >= self._limit

    def failed(self, key: str, now: datetime) -> None:
        """Count one failure."""
        failures = self._recent(key, now)
        failures.append(now)
        self._failures[key] = failures
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """Forget the failures of a key that just signed in."""
        self._failures.pop(key, None)
