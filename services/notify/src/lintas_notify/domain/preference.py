"""A phone's SMS preference: opted out or not, since when, and how (the latest wins)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Preference:
    """One phone's (notify's look-up hash) opt-out state."""

    phone_hash: str
    opted_out: bool
    changed_at: datetime
    channel: str

    def change(self, opted_out: bool, at: datetime, channel: str) -> Preference | None:
        """The state after a change made at `at`, or None if it changes nothing: an older
        change than the one held is ignored (events from intake and SMS keywords arrive
        in any order), and so is one to the state already held."""
        if at <= self.changed_at or opted_out == self.opted_out:
            return None
        return Preference(self.phone_hash, opted_out, at, channel)
