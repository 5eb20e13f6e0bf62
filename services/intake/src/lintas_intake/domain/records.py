"""The records a case accumulates: consents, notes, documents, outcome, timeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lintas_intake.domain.submission import Consent


@dataclass(frozen=True)
class ConsentRecord:
    """A consent as recorded (DESIGN §3): what it covers, and its withdrawal if any."""

    id: str
    consent: Consent | None  # None once the case is erased
    recorded_at: datetime
    recorded_by: str
    withdrawn_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Not withdrawn."""
        return self.withdrawn_at is None

    def erased(self) -> ConsentRecord:
        """The record without its content (who took it is personal to the case)."""
        return replace(self, consent=None)


@dataclass(frozen=True)
class Note:
    """An NGO's internal note on a case."""

    id: str
    text: str
    author_organisation_id: str
    at: datetime


@dataclass(frozen=True)
class DocumentRecord:
    """Metadata of a document about the case; the file itself is held elsewhere."""

    id: str
    kind: str
    file_name: str
    sha256: str
    size: int
    location: str
    recorded_at: datetime


@dataclass(frozen=True)
class Outcome:
    """How a case ended, and what was recovered per currency."""

    outcome: str
    amounts_recovered: tuple[tuple[str, str], ...]  # (currency, decimal string)
    closed_at: datetime
    closed_by: str


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to the case: who or what, what, when. Never personal data."""

    at: datetime
    source: str  # "intake", "referral", "notify"
    type: str  # the CloudEvents type, or an intake action such as "case.note_added"
    actor: str  # an organisation id, or the service that acted
    summary: str
    person_id: str | None = None  # the person who acted (console); None for an API key
