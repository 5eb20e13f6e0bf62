"""Webhook deliveries in MongoDB: one document per (event, partner) with its attempt log.

The `_id` is derived from the event id and the partner, so a redelivered referral event
creates no second delivery. Each attempt is recorded with a check on the number of
attempts read, so two schedulers cannot both record (or both schedule) the same attempt.
Pending deliveries are found through `<name>_timers` (see `DueTimers`), so the scheduler
never reads the whole, ever-growing delivery log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lintas_shared.due_timers import DueTimers
from lintas_shared.mongo import Document, update_by_id
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class MongoWebhookDeliveries:
    """The delivery log and schedule."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._timers = DueTimers(collection.database[f"{collection.name}_timers"])

    async def ensure_indexes(self) -> None:
        """For the per-referral log and the timers."""
        await self._collection.create_index([("referral_id", ASCENDING)])
        await self._timers.ensure_indexes()

    async def create(self, delivery: Document) -> bool:
        """Store a new pending delivery; False if it already exists."""
        await self._timers.set(delivery["_id"], delivery["next_attempt_at"])
        try:
            await self._collection.insert_one(delivery)
        except DuplicateKeyError:
            return False
        return True

    async def due(self, now: datetime, limit: int = 50) -> list[Document]:
        """Pending deliveries whose next attempt is due; stale timers are put right."""
        found = []
        for delivery_id in await self._timers.due(now, limit):
            doc = await self.get(delivery_id)
            if doc is None or doc["state"] != "pending" or doc["next_attempt_at"] is None:
                await self._timers.clear(delivery_id)
            elif doc["next_attempt_at"] > now:
                await self._timers.set(delivery_id, doc["next_attempt_at"])
            else:
                found.append(doc)
        return found

    async def repair(self) -> None:
        """At start-up: a timer for every pending delivery (one pass over the log)."""
        pending = self._collection.find({"state": "pending"}, {"next_attempt_at": 1})
        await self._timers.ensure_all(
            {d["_id"]: d["next_attempt_at"] async for d in pending if d.get("next_attempt_at")}
        )

    async def record_attempt(
        self, delivery_id: str, attempts_read: int, attempt: Document, changes: dict[str, Any]
    ) -> bool:
        """Append an attempt and set the new state, if nobody recorded one meanwhile."""
        following = changes.get("next_attempt_at")
        if following is not None:
            await self._timers.set(delivery_id, following)
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
        if recorded and following is None:
            await self._timers.clear(delivery_id)
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
        await self._timers.set(delivery_id, now)
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
