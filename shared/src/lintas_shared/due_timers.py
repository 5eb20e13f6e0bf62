"""Wake-up times kept in their own small collection, so "what is due?" stays cheap.

Each pending wake-up is one tiny document keyed by its owner's id, removed when nothing
is pending any more, and "what is due?" is a range query on the `due_at` index, which
reads only what is due (on the local FerretDB too: its build narrows a date range by the
index, see deploy/README.md).

The owner's document stays the truth; a timer is a hint. Owners keep this order, which
needs no transaction:
- set (or move) the timer *before* writing the state that needs it;
- clear it only *after* writing a state that needs none;
- whoever finds a due timer re-reads the owner and clears or moves the timer to match.
A crash between the two writes leaves an early or a stale timer, never a missing one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_shared.mongo import Document, upsert_by_id


class DueTimers:
    """One wake-up time per owner id, in a collection of its own."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """The due-time order that "what is due?" reads."""
        await self._collection.create_index([("due_at", ASCENDING)], name="due_at")

    async def set(self, owner_id: str, due_at: datetime) -> None:
        """Wake `owner_id` at `due_at` (replacing any earlier setting)."""
        await upsert_by_id(self._collection, owner_id, {"$set": {"due_at": due_at}})

    async def clear(self, owner_id: str) -> None:
        """Nothing is pending for `owner_id` any more."""
        await self._collection.delete_one({"_id": owner_id})

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Owners whose wake-up time is at or before `now`, earliest first."""
        cursor = (
            self._collection.find({"due_at": {"$lte": now}}, {"_id": 1})
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def get(self, owner_id: str) -> datetime | None:
        """The wake-up time of `owner_id`, if one is set."""
        doc = await self._collection.find_one({"_id": owner_id})
        return None if doc is None else doc["due_at"]

    async def ensure_all(self, wanted: Mapping[str, datetime]) -> int:
        """Make sure every owner in `wanted` wakes no later than its time: the start-up
        repair after a crash between an owner's write and its timer's, or for data from
        before timers. Never removes a timer (another process may be mid-write); stale
        ones are cleared by whoever finds them due. Returns how many were set."""
        current = {doc["_id"]: doc["due_at"] async for doc in self._collection.find({})}
        count = 0
        for owner_id, due_at in wanted.items():
            existing = current.get(owner_id)
            if existing is None or existing > due_at:
                await self.set(owner_id, due_at)
                count += 1
        return count
