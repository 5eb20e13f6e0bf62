"""Signed-in sessions: kept server-side, with an idle and an absolute expiry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives."""

    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class Session:
    """One browser's sign-in. `key` is the hash of the cookie's random id (the store never
    holds the id itself, so a copy of the store signs nobody in)."""

    key: str
    person_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    #: False between a correct password and the TOTP code it still needs.
    second_factor_done: bool
    language: str
    #: A TOTP secret shown for enrolment, kept until the person confirms a code from it.
    pending_totp_secret: str | None = None

    def is_live(self, now: datetime, policy: SessionPolicy) -> bool:
        """Neither idle too long nor older than the absolute limit."""
        return now - self.last_seen_at < policy.idle and now - self.created_at < policy.absolute

    def seen(self, now: datetime) -> Session:
        """The session after a request at `now`."""
        return replace(self, last_seen_at=now)
