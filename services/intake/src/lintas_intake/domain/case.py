"""The case as intake keeps it: its status, consents, notes, documents and timeline.

Everything here is pure. Each change returns a new `Case` with its version bumped, as the
unit of work writes it: one document update guarded by the version it was decided on.
Which events already changed a case is the unit of work's bookkeeping, not the domain's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from lintas_intake.domain.records import (
    ConsentRecord,
    DocumentRecord,
    Note,
    Outcome,
    TimelineEntry,
)
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


#: How an SMS preference was changed: by her NGO through the API, or by her own SMS.
SmsChannel = Literal["api", "sms"]

#: Once here, no routing news changes the status any more.
FINAL_STATUSES = frozenset({CaseStatus.CLOSED, CaseStatus.ERASED})


class CaseStateError(Exception):
    """The change is not allowed in the case's current state (HTTP 409)."""


@dataclass(frozen=True)
class ReferralSummary:
    """The current handoff as the NGO sees it."""

    referral_id: str
    partner_organisation_id: str
    country: str
    offered_at: datetime
    status: str = "offered"
    forum_code: str | None = None
    forum_name: str | None = None
    deadline: str | None = None
    deadline_verified: bool | None = None


@dataclass(frozen=True)
class Case:
    """A submitted case. `submission` is None once the worker's data is erased."""

    id: str
    reference: str
    organisation_id: str
    external_ref: str
    submission: CaseSubmission | None
    submitted_at: datetime
    updated_at: datetime
    status: CaseStatus = CaseStatus.SUBMITTED
    status_reason: str | None = None
    referral: ReferralSummary | None = None
    consents: tuple[ConsentRecord, ...] = ()
    notes: tuple[Note, ...] = ()
    documents: tuple[DocumentRecord, ...] = ()
    outcome: Outcome | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    version: int = 1
    sms_opted_out: bool = False
    #: When and how (`api`: her NGO; `sms`: she texted) the SMS preference last changed.
    sms_preference_at: datetime | None = None
    sms_preference_channel: SmsChannel | None = None
    #: The Idempotency-Key the case was created under (`auto:<id>` without one), and a
    #: hash of the request body (dropped at erasure: it could confirm a guessed body).
    idempotency_key: str | None = None
    request_hash: str | None = None

    # --- reading -----------------------------------------------------------------

    @property
    def erased(self) -> bool:
        """Whether the worker's personal data is gone for good."""
        return self.status is CaseStatus.ERASED

    def consent(self, consent_id: str) -> ConsentRecord | None:
        """One consent record by id."""
        return next((c for c in self.consents if c.id == consent_id), None)

    # --- changes by the NGO ------------------------------------------------------

    def correct(self, submission: CaseSubmission, entry: TimelineEntry) -> Case:
        """Replace the case details (worker, employment, claims) with corrected ones."""
        self._require_open()
        return self._next(entry, submission=submission)

    def add_consent(self, consent: ConsentRecord, entry: TimelineEntry) -> Case:
        """Record another consent."""
        self._require_open()
        return self._next(entry, consents=(*self.consents, consent))

    def withdraw_consent(self, consent_id: str, at: datetime, entry: TimelineEntry) -> Case:
        """Withdraw one consent record."""
        self._require_open()
        consent = self.consent(consent_id)
        if consent is None:
            raise KeyError(consent_id)
        if consent.withdrawn_at is not None:
            raise CaseStateError("consent already withdrawn")
        updated = tuple(
            replace(c, withdrawn_at=at) if c.id == consent_id else c for c in self.consents
        )
        return self._next(entry, consents=updated)

    def add_note(self, note: Note, entry: TimelineEntry) -> Case:
        """Add an internal note (never shared with partners)."""
        self._require_open()
        return self._next(entry, notes=(*self.notes, note))

    def add_document(self, document: DocumentRecord, entry: TimelineEntry) -> Case:
        """Record a document's metadata (the file itself is held elsewhere)."""
        self._require_open()
        return self._next(entry, documents=(*self.documents, document))

    def set_sms_opt_out(self, opted_out: bool, entry: TimelineEntry) -> Case:
        """The worker opts out of (or back into) SMS through her NGO."""
        self._require_open()
        return self._next(
            entry,
            sms_opted_out=opted_out,
            sms_preference_at=entry.at,
            sms_preference_channel="api",
        )

    def is_newer_sms_preference(self, changed_at: datetime) -> bool:
        """Whether a change made at `changed_at` is later than the one the case shows
        (changes by API and by SMS arrive in any order; the latest stands)."""
        return self.sms_preference_at is None or changed_at > self.sms_preference_at

    def close(self, outcome: Outcome, entry: TimelineEntry) -> Case:
        """Close the case with its outcome."""
        self._require_open()
        return self._next(entry, status=CaseStatus.CLOSED, status_reason=None, outcome=outcome)

    def erase(self, entry: TimelineEntry) -> Case:
        """Drop every piece of the worker's personal data, keeping the bare facts."""
        if self.erased:
            raise CaseStateError("case already erased")
        # News from routing carries a partner's free text after "<what>: " (a decline's
        # reason), which may name her: only the "<what>" stays.
        timeline = tuple(
            replace(t, summary=t.summary.partition(": ")[0]) if t.source == "referral" else t
            for t in self.timeline
        )
        return replace(self, timeline=timeline)._next(
            entry,
            status=CaseStatus.ERASED,
            status_reason=None,
            submission=None,
            notes=(),
            documents=(),
            consents=tuple(c.erased() for c in self.consents),
            request_hash=None,
        )

    # --- news from other services -------------------------------------------------

    def record_news(
        self,
        entry: TimelineEntry,
        *,
        status: CaseStatus | None = None,
        reason: str | None = None,
        referral: ReferralSummary | None = None,
        outcome: Outcome | None = None,
        sms_opted_out: bool | None = None,
        sms_preference_at: datetime | None = None,
        sms_preference_channel: SmsChannel | None = None,
    ) -> Case:
        """Apply an event from routing or notify (the unit of work applies each once):
        timeline, and status if it moves; an SMS preference she texted (unless the case
        is erased)."""
        changes: dict[str, Any] = {}
        if sms_opted_out is not None and not self.erased:
            changes["sms_opted_out"] = sms_opted_out
            changes["sms_preference_at"] = sms_preference_at
            changes["sms_preference_channel"] = sms_preference_channel
        if self.status not in FINAL_STATUSES:
            if status is not None:
                changes["status"] = status
                changes["status_reason"] = reason
            if referral is not None:
                changes["referral"] = referral
            if outcome is not None:
                changes["outcome"] = outcome
        return self._next(entry, **changes)

    # --- helpers ------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.status in FINAL_STATUSES:
            raise CaseStateError(f"the case is {self.status.value}")

    def _next(self, entry: TimelineEntry, **changes: Any) -> Case:
        return replace(
            self,
            timeline=(*self.timeline, entry),
            updated_at=entry.at,
            version=self.version + 1,
            **changes,
        )
