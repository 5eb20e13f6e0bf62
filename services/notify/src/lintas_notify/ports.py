"""What notify's use cases need from the outside world, and the errors providers raise."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import CaseSubmitted, WorkerInfo
from lintas_shared.mongo import Document

from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus
from lintas_notify.domain.profile import CaseProfile
from lintas_notify.domain.stage import Stage


class ProviderError(Exception):
    """A provider did not accept a message; `reason` is the provider's own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderRejectedError(ProviderError):
    """A permanent refusal (invalid number, blocked sender): retrying cannot help."""


class ProviderUnavailableError(ProviderError):
    """A transient failure (429, 5xx, timeout, dropped connection): try again later.

    `retry_after` is the provider's own wish in seconds, when it said one. `maybe_accepted`
    is true when the provider may have taken the message anyway (a timeout, a 500), so
    the next attempt must ask it first.
    """

    def __init__(
        self, reason: str, *, retry_after: float | None = None, maybe_accepted: bool = True
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.maybe_accepted = maybe_accepted


class SmsProvider(Protocol):
    """An SMS gateway."""

    name: str

    async def send(self, sms: OutgoingSms) -> str:
        """Hand the message over under its client reference `sms.id`; returns the
        provider's message id. Raises ProviderRejectedError or ProviderUnavailableError."""
        ...

    async def find_sent(self, client_reference: str) -> str | None:
        """The provider's id for a message it already accepted under this reference, or
        None when it did not or cannot tell (then `send` must be safe to repeat, e.g. by
        an idempotency key)."""
        ...

    async def forget(self, client_references: Collection[str]) -> None:
        """Erasure: drop the phone from whatever this provider keeps of these messages
        (the file provider's outbox); a gateway's own records are under its contract."""
        ...


class CaseKeyReader(Protocol):
    """Reads a case's data key from the vault; raises CaseKeyMissingError after erasure."""

    async def get(self, case_id: str) -> DataKey:
        """The case's data key (kept a while once read)."""
        ...

    async def current(self, case_id: str) -> DataKey:
        """The case's data key as the vault holds it now (to send an SMS with)."""
        ...

    def forget(self, case_id: str) -> None:
        """Drop the case's key from memory (its case was erased)."""
        ...


class ReceiptSettler(Protocol):
    """Applies delivery receipts that arrived before their message's `sent` record."""

    async def recorded_sent(self, provider: str, provider_message_id: str) -> bool:
        """A `sent` record with this provider id was just written; apply a kept receipt."""
        ...

    async def settle_early(self, limit: int = 100) -> int:
        """Apply every kept receipt whose message is recorded by now."""
        ...


def sms_from_document(doc: Document, to: str) -> OutgoingSms:
    """The message as a provider needs it, with the phone decrypted only now."""
    return OutgoingSms(
        id=doc["_id"],
        case_id=doc.get("case_id"),
        case_reference=doc.get("case_reference"),
        to=to,
        to_sealed=doc.get("to"),
        phone_hash=doc.get("phone_hash") or "",  # None once the case is erased
        body=doc["body"],
        language=doc["language"],
        template=doc["template"],
        encoding=doc["encoding"],
        segments=doc["segments"],
        causing_event=doc["causing_event"],
        kind=MessageKind(doc.get("kind", MessageKind.NOTIFICATION.value)),
    )


def provider_key(provider: str, provider_message_id: str) -> str:
    """The key under which a provider's message id is filed (early receipts)."""
    return f"{provider}:{provider_message_id}"


class MessageStore(Protocol):
    """SMS records: one per message, each transition one conditional update."""

    async def schedule(
        self,
        sms: OutgoingSms,
        now: datetime,
        status: SmsStatus,
        *,
        current_country: str | None = None,
        time_zone: str | None = None,
        send_after: datetime | None = None,
        reason: str | None = None,
    ) -> tuple[Document, bool]:
        """Record the decision (once per id); the record and whether this call made it."""
        ...

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None:
        """Record a message that must not be sent (idempotent)."""
        ...

    async def get(self, message_id: str) -> Document | None:
        """One message."""
        ...

    async def claim(
        self, message_id: str, now: datetime, *, from_status: SmsStatus = SmsStatus.SCHEDULED
    ) -> Document | None:
        """Take the next attempt (with a lease); None if someone else has it."""
        ...

    async def note_attempt(
        self,
        message_id: str,
        now: datetime,
        error: str,
        *,
        another: bool,
        claim: str | None,
        kind: MessageKind = MessageKind.NOTIFICATION,
    ) -> bool:
        """A failed attempt while `sending`, if the attempt `claim` still holds it."""
        ...

    async def defer(
        self,
        message_id: str,
        until: datetime,
        reason: str,
        now: datetime,
        *,
        from_status: SmsStatus = SmsStatus.SCHEDULED,
        kind: MessageKind = MessageKind.NOTIFICATION,
        claim: str | None = None,
    ) -> bool:
        """Put the message (back) in the schedule for `until` (from `sending`: only while
        no lease is live and `claim` is its latest attempt); whether it moved."""
        ...

    async def finish(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        *,
        from_statuses: Sequence[SmsStatus],
        reason: str | None = None,
        provider: str | None = None,
        provider_message_id: str | None = None,
        events: Sequence[CloudEvent] = (),
        claim: str | None = None,
        version: int | None = None,
    ) -> bool:
        """Move to a final status with its events; False if it was in none of those (or
        no longer held by the attempt `claim`, when given). `version`: the message's as
        the caller read it, if known (the store may then skip reading it back)."""
        ...

    async def record_report(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        reason: str | None,
        events: Sequence[CloudEvent],
    ) -> bool:
        """A delivery report (a repeated one changes nothing)."""
        ...

    async def due(self, now: datetime, limit: int = 100) -> list[Document]:
        """Notifications whose time has come: scheduled, or left `sending` past the lease."""
        ...

    async def in_sending(self, now: datetime) -> list[Document]:
        """Messages left `sending` whose lease ran out."""
        ...

    async def sent_times(self, phone_hash: str, since: datetime) -> list[datetime]:
        """When notifications to this phone went out, or were claimed, since `since`."""
        ...

    async def by_provider_id(self, provider: str, provider_message_id: str) -> Document | None:
        """The message a provider knows under this id, once recorded as sent."""
        ...

    async def forget_case(self, case_id: str, reference: str | None, now: datetime) -> list[str]:
        """Erasure of a case's messages; their ids."""
        ...

    async def forget_worker(self, phone_hash: str) -> list[str]:
        """Erasure of a phone's replies; their ids."""
        ...


class OptOuts(Protocol):
    """Whether a phone asked for no more SMS."""

    async def is_opted_out(self, phone_hash: str) -> bool:
        """True after her STOP (or the NGO's opt-out), until she opts in again."""
        ...


@dataclass(frozen=True)
class Waiting:
    """An event that arrived before its case, as kept in the case's document."""

    event: CloudEvent
    entry: Document  # as stored: what `done` removes


class CaseProfileStore(Protocol):
    """What notify keeps per case, and the events waiting for a case not known yet."""

    async def add(
        self, case: CaseSubmitted, phone_hash: str
    ) -> tuple[CaseProfile | None, list[Waiting]]:
        """Store a submitted case (idempotent); the profile (None: erased) and the events
        that waited for it."""
        ...

    async def keep_waiting(
        self, case_id: str, event: CloudEvent, now: datetime
    ) -> CaseProfile | bool | None:
        """Keep an event until the case is known; None when kept, else the state found."""
        ...

    async def done(self, case_id: str, waiting: Waiting) -> None:
        """A waiting event was handled."""
        ...

    async def correct_worker(
        self, case_id: str, worker: WorkerInfo, phone_hash: str, at: datetime
    ) -> None:
        """Replace the worker's contact details unless a newer correction is in."""
        ...

    async def set_stage(self, case_id: str, stage: Stage, at: datetime) -> bool:
        """Move the stage unless a later event moved it; False when no live profile was
        moved (none yet, erased, or a later stage)."""
        ...

    async def erase(self, case_id: str) -> None:
        """Keep only the fact that the case existed and was erased."""
        ...

    async def state(self, case_id: str) -> CaseProfile | bool | None:
        """The profile; False if erased; None if not known yet."""
        ...

    async def by_reference(self, reference: str) -> CaseProfile | None:
        """The live case with this reference."""
        ...

    async def language_for_phone(self, phone_hash: str) -> str | None:
        """The language of this phone's most recent case."""
        ...

    async def case_ids_for_phone(self, phone_hash: str) -> list[str]:
        """This phone's live cases."""
        ...


class PreferenceStore(OptOuts, Protocol):
    """Opt-out state per phone, with the events a change announces."""

    async def change(
        self,
        phone_hash: str,
        opted_out: bool,
        at: datetime,
        channel: str,
        events: Sequence[tuple[str, CloudEvent]] = (),
    ) -> bool:
        """Apply a change made at `at` (the latest wins); True if it flipped the state."""
        ...

    async def forget(self, phone_hash: str) -> None:
        """Erasure of the phone's last case."""
        ...

    async def forget_case(self, phone_hash: str, case_id: str) -> None:
        """Erasure of one of the phone's cases."""
        ...


class ReplyBudget(Protocol):
    """At most so many answers to one phone in each window."""

    async def allow(self, phone_hash: str, reply_id: str, now: datetime) -> bool:
        """Whether this reply may be sent (counted if so)."""
        ...

    async def forget(self, phone_hash: str) -> None:
        """Erasure of the phone's last case."""
        ...


class EarlyReceiptStore(Protocol):
    """Delivery receipts waiting for the `sent` record of their message."""

    async def keep(
        self,
        provider: str,
        provider_message_id: str,
        status: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        """Keep a final status."""
        ...

    async def get(self, provider: str, provider_message_id: str) -> Document | None:
        """The receipt kept for this id."""
        ...

    async def drop(self, provider: str, provider_message_id: str) -> None:
        """Forget a receipt."""
        ...

    async def waiting(self, limit: int = 100) -> list[Document]:
        """Receipts still waiting."""
        ...
