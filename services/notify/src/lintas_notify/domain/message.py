"""An SMS to a worker, as decided before it is handed to a provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from lintas_notify.domain.encoding import Encoding


class SmsStatus(StrEnum):
    """Where a message stands.

    `scheduled` waits for its `send_after` time (quiet hours, rate limits, a retry);
    `sending` means "may or may not have reached the provider"; `sent` the provider
    accepted it; `delivered`/`failed` what the provider reported afterwards (or a
    permanent refusal); `suppressed` it must never go (opted out, no consent, erased).
    """

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


#: Statuses after which a message is never handed to a provider again.
FINAL_STATUSES = frozenset(
    {SmsStatus.SENT, SmsStatus.DELIVERED, SmsStatus.FAILED, SmsStatus.SUPPRESSED}
)


class MessageKind(StrEnum):
    """A notification the system decided to send, or a reply to the worker's own SMS."""

    NOTIFICATION = "notification"
    REPLY = "reply"


@dataclass(frozen=True)
class OutgoingSms:
    """One SMS. Its id is derived from what caused it and the template, so it is stable."""

    id: str
    case_id: str | None
    case_reference: str | None
    to: str = field(repr=False)  # plaintext, only in memory while sending
    to_sealed: str | None  # what is stored: the phone sealed with the case key
    phone_hash: str
    body: str
    language: str
    template: str
    encoding: Encoding
    segments: int
    causing_event: str
    kind: MessageKind = MessageKind.NOTIFICATION
