"""Delivery receipts: the provider's word on a message, applied once, never lost.

A receipt names the provider's message id. If the message's `sent` record (which holds
that id) is already written, the receipt settles it at once. If not, the receipt has
overtaken the response to the submit: it is kept in `early_receipts` (by `_id`: it names
no message of ours yet, so it cannot wait inside one) and applied as soon as the record is
written (`recorded_sent`, called by the dispatcher right after it, when this process kept
it: an SMPP receipt comes back on the session that submitted), or by the dispatcher's
next pass (`settle_early`, within its interval) when another instance kept it or notify
stopped in between. So a `sent` record costs no look-up in `early_receipts`. Each side
writes its part before it looks for the other's, so at least one of them sees both;
applying the same status twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from lintas_shared.events import SmsDeliveryReported, make_event
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document

from lintas_notify.dispatch import SOURCE
from lintas_notify.domain.message import SmsStatus
from lintas_notify.ports import EarlyReceiptStore, MessageStore, provider_key

log = get_logger(__name__)
Clock = Callable[[], datetime]
ReportedStatus = Literal["delivered", "failed"]
#: The provider's words for the two outcomes; any other status changes nothing.
FINAL_STATUSES: Final[dict[str, ReportedStatus]] = {
    "delivered": "delivered",
    "failed": "failed",
    "undelivered": "failed",
    "rejected": "failed",
    "expired": "failed",
}


@dataclass
class DeliveryReports:
    """Applies delivery receipts to SMS records, keeping early ones until they fit."""

    messages: MessageStore
    early: EarlyReceiptStore
    clock: Clock
    #: A kept receipt whose message never shows up (a provider reporting on messages
    #: that are not ours) is dropped after this long.
    retention: timedelta = timedelta(days=2)
    #: Receipts this process kept, not yet applied (a hint: the pass finds all of them).
    _kept_here: set[str] = field(default_factory=set)

    async def receipt(
        self, provider: str, provider_message_id: str, status: str, reason: str | None
    ) -> bool:
        """Record a provider's delivery report; False if its message is not (yet) known.

        `delivered` and `failed`/`undelivered`/`rejected`/`expired` settle the message and
        are announced as SmsDeliveryReported; other statuses (queued, sent…) change
        nothing. A settling report for a message not recorded yet is kept for it.
        """
        doc = await self.messages.by_provider_id(provider, provider_message_id)
        final = FINAL_STATUSES.get(status.lower())
        if final is None:
            return doc is not None
        now = self.clock()
        if doc is None:
            await self.early.keep(provider, provider_message_id, final, reason, now)
            if len(self._kept_here) < 10_000:  # a hint only: the pass finds the rest
                self._kept_here.add(provider_key(provider, provider_message_id))
            # The record may have been written since the look-up, and its writer may have
            # looked for kept receipts before this one was kept: look once more.
            doc = await self.messages.by_provider_id(provider, provider_message_id)
            if doc is None:
                log.info("delivery receipt kept until its message is recorded", provider=provider)
                return False
            await self._apply(doc, final, reason, now)
            await self.early.drop(provider, provider_message_id)
            self._kept_here.discard(provider_key(provider, provider_message_id))
            return True
        await self._apply(doc, final, reason, now)
        return True

    async def recorded_sent(self, provider: str, provider_message_id: str) -> bool:
        """The `sent` record with this provider id was just written: apply a receipt
        that came first, if this process kept one (no store read otherwise). True if
        one was applied."""
        if provider_key(provider, provider_message_id) not in self._kept_here:
            return False
        return await self._settle(provider, provider_message_id)

    async def _settle(self, provider: str, provider_message_id: str) -> bool:
        """Apply the kept receipt for this id if its message is recorded by now."""
        kept = await self.early.get(provider, provider_message_id)
        if kept is None:
            return False
        doc = await self.messages.by_provider_id(provider, provider_message_id)
        if doc is None:
            return False
        await self._apply(doc, kept["status"], kept.get("reason"), kept["received_at"])
        await self.early.drop(provider, provider_message_id)
        self._kept_here.discard(provider_key(provider, provider_message_id))
        return True

    async def settle_early(self, limit: int = 100) -> int:
        """The dispatcher's pass: apply kept receipts whose message is recorded by now
        (notify stopped between the record and `recorded_sent`); drop expired ones."""
        applied = 0
        now = self.clock()
        for kept in await self.early.waiting(limit):
            provider, provider_message_id = kept["provider"], kept["provider_message_id"]
            if await self._settle(provider, provider_message_id):
                applied += 1
            elif kept["received_at"] < now - self.retention:
                await self.early.drop(provider, provider_message_id)
                self._kept_here.discard(provider_key(provider, provider_message_id))
                log.warning("delivery receipt for an unknown message dropped", provider=provider)
        return applied

    async def _apply(
        self, doc: Document, status: ReportedStatus, reason: str | None, reported_at: datetime
    ) -> None:
        events = []
        if doc.get("case_id"):
            report = SmsDeliveryReported(
                case_id=doc["case_id"],
                message_id=doc["_id"],
                status=status,
                reported_at=reported_at,
                reason=reason,
            )
            events.append(make_event(report, source=SOURCE, subject=doc["case_id"]))
        await self.messages.record_report(
            doc["_id"], SmsStatus(status), self.clock(), reason, events
        )
