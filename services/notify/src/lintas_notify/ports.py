"""What notify's use cases need from the outside world, and the errors providers raise."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from lintas_shared.crypto import DataKey

from lintas_notify.domain.message import OutgoingSms


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
        """The case's data key."""
        ...


class ReceiptSettler(Protocol):
    """Applies delivery receipts that arrived before their message's `sent` record."""

    async def recorded_sent(self, provider: str, provider_message_id: str) -> bool:
        """A `sent` record with this provider id was just written; apply a kept receipt."""
        ...

    async def settle_early(self, limit: int = 100) -> int:
        """Apply every kept receipt whose message is recorded by now."""
        ...
