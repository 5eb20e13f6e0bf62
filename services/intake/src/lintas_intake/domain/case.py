"""The case as intake keeps it, and how its status follows what other services report."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from lintas_intake.domain.submission import CaseSubmission


class CaseStatus(StrEnum):
    """The stage an NGO sees its case at."""

    SUBMITTED = "submitted"
    AWAITING_CONSENT = "awaiting_consent"
    REFERRED = "referred"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    UNASSIGNED = "unassigned"
    CLOSED = "closed"
    ERASED = "erased"


#: Once here, no routing news changes the status any more.
FINAL_STATUSES = frozenset({CaseStatus.CLOSED, CaseStatus.ERASED})


@dataclass(frozen=True)
class ReferralSummary:
    """The handoff as the NGO sees it."""

    referral_id: str
    partner_organisation_id: str
    country: str
    offered_at: datetime


@dataclass(frozen=True)
class Case:
    """A submitted case."""

    id: str
    reference: str
    organisation_id: str
    submission: CaseSubmission
    submitted_at: datetime
    updated_at: datetime
    status: CaseStatus = CaseStatus.SUBMITTED
    status_reason: str | None = None
    referral: ReferralSummary | None = None
    version: int = 1
    processed_events: tuple[str, ...] = field(default=())

    def has_processed(self, event_key: str) -> bool:
        """Whether the event with this (ce_source, ce_id) key already changed this case."""
        return event_key in self.processed_events

    def referral_offered(self, referral: ReferralSummary, event_key: str, now: datetime) -> Case:
        """A partner was offered the case."""
        if self.status in FINAL_STATUSES:
            return self._processed(event_key, now)
        return replace(
            self._processed(event_key, now),
            status=CaseStatus.REFERRED,
            status_reason=None,
            referral=referral,
        )

    def routing_blocked(
        self, status: CaseStatus, reason: str, event_key: str, now: datetime
    ) -> Case:
        """Routing could not offer the case; the NGO sees why."""
        if self.status in FINAL_STATUSES:
            return self._processed(event_key, now)
        return replace(self._processed(event_key, now), status=status, status_reason=reason)

    def _processed(self, event_key: str, now: datetime) -> Case:
        return replace(
            self,
            processed_events=(*self.processed_events, event_key),
            updated_at=now,
            version=self.version + 1,
        )
