"""Events that arrived before the case they concern, kept until the case is known.

Case and referral events travel on two topics, read by two consumers: a referral event
can overtake its case's `submitted` event (notify was behind on one topic, or restarted).
Blocking the partition until then would stall every other case; parking the event in
the DLQ would lose a message the worker needs. So it waits here, keyed by its
(ce_source, ce_id), and is handled when the case arrives.
"""

from __future__ import annotations

from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class MongoEarlyEvents:
    """`early_events`: one document per waiting event."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """Lookups by case."""
        await self._collection.create_index("case_id")

    async def keep(self, case_id: str, event: CloudEvent, now: datetime) -> None:
        """Keep an event until its case is known (idempotent)."""
        try:
            await self._collection.insert_one(
                {
                    "_id": event.dedupe_key,
                    "case_id": case_id,
                    "event": event.model_dump(mode="json"),
                    "kept_at": now,
                }
            )
        except DuplicateKeyError:
            pass

    async def for_case(self, case_id: str) -> list[CloudEvent]:
        """The events waiting for this case, oldest first."""
        cursor = self._collection.find({"case_id": case_id}).sort("kept_at", 1)
        return [CloudEvent.model_validate(doc["event"]) async for doc in cursor]

    async def done(self, event: CloudEvent) -> None:
        """The event was handled: forget it."""
        await self._collection.delete_one({"_id": event.dedupe_key})

    async def drop_case(self, case_id: str) -> None:
        """Erasure: nothing more will be done for this case."""
        await self._collection.delete_many({"case_id": case_id})
