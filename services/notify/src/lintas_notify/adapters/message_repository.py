"""SMS records in MongoDB."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from lintas_shared.topics import NOTIFICATIONS
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_notify.domain.message import OutgoingSms, SmsStatus


def _document(sms: OutgoingSms, status: SmsStatus, now: datetime, **extra: object) -> Document:
    return {
        "_id": sms.id,
        "case_id": sms.case_id,
        "case_reference": sms.case_reference,
        "to": sms.to_sealed,
        "body": sms.body,
        "language": sms.language,
        "template": sms.template,
        "encoding": sms.encoding,
        "segments": sms.segments,
        "causing_event": sms.causing_event,
        "status": status.value,
        "status_history": [{"status": status.value, "at": now, **extra}],
        "created_at": now,
        "updated_at": now,
        OUTBOX_FIELD: [],
    }


class MongoMessageRepository:
    """The `MessageRepository` on MongoDB (and FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self._collection = collection
        self._on_write = on_write

    async def claim(self, sms: OutgoingSms, now: datetime) -> SmsStatus | None:
        """Insert the message as `sending`; the unique _id makes this a one-time claim."""
        try:
            await self._collection.insert_one(_document(sms, SmsStatus.SENDING, now))
        except DuplicateKeyError:
            existing = await self._collection.find_one({"_id": sms.id}, {"status": 1})
            return SmsStatus(existing["status"]) if existing else SmsStatus.SENDING
        return None

    async def mark_sent(
        self,
        sms: OutgoingSms,
        provider: str,
        provider_message_id: str,
        now: datetime,
        events: Sequence[CloudEvent],
    ) -> None:
        """Record the provider's acceptance and queue the `sms sent` event, in one update."""
        await self._collection.update_one(
            {"_id": sms.id, "status": SmsStatus.SENDING.value},
            {
                "$set": {
                    "status": SmsStatus.SENT.value,
                    "provider": provider,
                    "provider_message_id": provider_message_id,
                    "updated_at": now,
                },
                "$push": {
                    "status_history": {"status": SmsStatus.SENT.value, "at": now},
                    OUTBOX_FIELD: {"$each": [outbox_entry(NOTIFICATIONS, e) for e in events]},
                },
            },
        )
        self._on_write(sms.id)

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None:
        """Record a message that must not be sent, and why (idempotent)."""
        doc = _document(sms, SmsStatus.SUPPRESSED, now, reason=reason)
        doc["to"] = None  # not sent: keep no phone number for it
        try:
            await self._collection.insert_one(doc)
        except DuplicateKeyError:
            pass

    async def for_case(self, case_id: str) -> list[Document]:
        """Every SMS record of a case (operators and tests)."""
        return [d async for d in self._collection.find({"case_id": case_id}, {OUTBOX_FIELD: 0})]
