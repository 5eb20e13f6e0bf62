"""When an SMS may go: quiet hours in the worker's local time, and rate limits.

Nothing here sleeps or reads a clock: each rule takes `now` and answers with the
earliest time the message may be sent. The caller stores that time on the message
(a deferral), so a deferred message survives a restart and is never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The zone used when a worker's own zone is unknown, by her current country. Indonesia
#: spans three zones (WIB, WITA, WIT): the event's `time_zone` names hers where known, and
#: WIB, where most workers' home villages are, stands in otherwise.
COUNTRY_ZONES: Final = {
    "ID": "Asia/Jakarta",
    "HK": "Asia/Hong_Kong",
    "SG": "Asia/Singapore",
    "MY": "Asia/Kuala_Lumpur",
    "TW": "Asia/Taipei",
}
INDONESIAN_ZONES: Final = frozenset(
    {"Asia/Jakarta", "Asia/Pontianak", "Asia/Makassar", "Asia/Jayapura"}
)
DEFAULT_ZONE: Final = "Asia/Jakarta"


def worker_zone(current_country: str, time_zone: str | None) -> ZoneInfo:
    """The worker's local zone: her own where known and valid, else her country's."""
    if time_zone:
        try:
            return ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # an unknown zone name must not block her SMS; fall back to the country
    return ZoneInfo(COUNTRY_ZONES.get(current_country, DEFAULT_ZONE))


@dataclass(frozen=True)
class QuietHours:
    """No SMS from `start` to `end` local time (spanning midnight when start > end)."""

    start: time = time(21, 0)
    end: time = time(7, 0)

    def is_quiet(self, local: datetime) -> bool:
        """Whether `local` (an aware local time) falls in the quiet hours."""
        t = local.timetz().replace(tzinfo=None)
        if self.start == self.end:
            return False  # configured off
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_allowed(self, now: datetime, zone: ZoneInfo) -> datetime:
        """`now` if outside quiet hours, else the end of the quiet hours (in UTC terms)."""
        local = now.astimezone(zone)
        if not self.is_quiet(local):
            return now
        end = datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=zone)
        return end.astimezone(now.tzinfo)


@dataclass(frozen=True)
class WorkerLimit:
    """At most `per_window` SMS to one worker in any rolling `window` (default: a day)."""

    per_window: int = 3
    window: timedelta = timedelta(days=1)

    def next_allowed(self, now: datetime, sent_at: Sequence[datetime]) -> datetime:
        """`now` if she has had fewer than the limit, else when the oldest one ages out."""
        recent = sorted(t for t in sent_at if t > now - self.window)
        if len(recent) < self.per_window:
            return now
        return recent[len(recent) - self.per_window] + self.window


@dataclass
class ProviderRateLimit:
    """At most `per_second` messages a second through one provider (a token bucket).

    The bucket holds up to `per_second` tokens (at least one) and refills continuously.
    `reserve` takes a token and answers `now`, or, when the bucket is empty, answers
    when the next token will be there: the caller defers the message to that time
    rather than dropping it, and reserves again then.
    """

    per_second: float = 10.0
    _tokens: float | None = field(default=None, init=False)
    _last: datetime | None = field(default=None, init=False)

    def reserve(self, now: datetime) -> datetime:
        """`now` (a token taken) or the time a token will be free (nothing taken)."""
        capacity = max(self.per_second, 1.0)
        tokens = capacity if self._tokens is None else self._tokens
        if self._last is not None and now > self._last:
            tokens = min(capacity, tokens + (now - self._last).total_seconds() * self.per_second)
        self._last = now if self._last is None else max(self._last, now)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return now
        self._tokens = tokens
        return now + timedelta(seconds=(1.0 - tokens) / self.per_second)
