"""Webhook deliveries in MongoDB: one document per (event, partner) with its attempt log.

The `_id` is derived from the event id and the partner, so a redelivered referral event
creates no second delivery. Each attempt is recorded with a check on the number of
attempts read, so two schedulers cannot both record (or both schedule) the same attempt.
Pending deliveries are found by a range query on the indexed `next_attempt_at` (null once
a delivery is delivered or failed), so the scheduler never reads the whole, ever-growing
delivery log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lintas_shared.mongo import Document, update_by_id
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class MongoWebhookDeliveries:
    """The delivery log and schedule."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """For the per-referral log and the schedule."""
        await self._collection.create_index([("referral_id", ASCENDING)])
        await self._collection.create_index(
            [("next_attempt_at", ASCENDING)], name="next_attempt_at"
        )

    async def create(self, delivery: Document) -> bool:
        """Store a new pending delivery; False if it already exists."""
        try:
            await self._collection.insert_one(delivery)
        except DuplicateKeyError:
            return False
        return True

    async def due(self, now: datetime, limit: int = 50) -> list[Document]:
        """Pending deliveries whose next attempt is due, earliest first (a range query
        on the `next_attempt_at` index)."""
        cursor = (
            self._collection.find({"next_attempt_at": {"$lte": now}})
            .sort("next_attempt_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor if doc.get("state") == "pending"]

    async def record_attempt(
        self, delivery_id: str, attempts_read: int, attempt: Document, changes: dict[str, Any]
    ) -> bool:
        """Append an attempt and set the new state, if nobody recorded one meanwhile."""
        recorded = await update_by_id(
            self._collection,
            delivery_id,
            {
                "$set": changes,
                "$push": {"log": attempt},
                "$inc": {"attempts": 1, "attempts_in_window": 1},
            },
            where={"attempts": attempts_read},
        )
        return recorded

    async def get(self, delivery_id: str) -> Document | None:
        """One delivery."""
        return await self._collection.find_one({"_id": delivery_id})

    async def for_referral(self, referral_id: str) -> list[Document]:
        """The delivery log of a referral, oldest first."""
        cursor = self._collection.find({"referral_id": referral_id}).sort("created_at", ASCENDING)
        return [doc async for doc in cursor]

    async def reschedule(self, delivery_id: str, now: datetime) -> bool:
        """An operator's redelivery: pending again, due now, with a fresh 24-hour window."""
        result = await self._collection.update_one(
            {"_id": delivery_id},
            {
                "$set": {
                    "state": "pending",
                    "next_attempt_at": now,
                    "window_started_at": now,
                    "attempts_in_window": 0,
                },
                "$push": {"log": {"at": now, "redelivery_requested": True}},
            },
        )
        return result.matched_count == 1
