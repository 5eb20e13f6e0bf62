"""An SMS to a worker, as decided before it is handed to a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from lintas_notify.domain.encoding import Encoding


class SmsStatus(StrEnum):
    """Where a message stands. `sending` means "may or may not have reached the provider"."""

    SENDING = "sending"
    SENT = "sent"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class OutgoingSms:
    """One SMS. Its id is derived from the causing event and template, so it is stable."""

    id: str
    case_id: str
    case_reference: str
    to: str = field(repr=False)  # plaintext, only in memory while sending
    to_sealed: str  # what is stored: the phone encrypted with the case key
    body: str
    language: str
    template: str
    encoding: Encoding
    segments: int
    causing_event: str
