"""Wake-up times kept in their own small collection, so "what is due?" stays cheap.

FerretDB v1 serves only `_id` equality from an index: any other filter reads every
document of the collection (about 0.07 ms per case-sized document on these machines). A
scheduler asking its main collection "what is due?" every few seconds therefore costs
time proportional to all history (every case, every SMS ever sent). Here each pending
wake-up is one tiny document keyed by its owner's id and removed when nothing is pending
any more, so the question reads only what is actually scheduled. On MongoDB the `due_at`
index serves it.

The owner's document stays the truth; a timer is a hint. Owners keep this order, which
needs no transaction:
- set (or move) the timer *before* writing the state that needs it;
- clear it only *after* writing a state that needs none;
- whoever finds a due timer re-reads the owner and clears or moves the timer to match.
A crash between the two writes leaves an early or a stale timer, never a missing one.

Even the small collection grows with what is pending (referral keeps a timer per open
offer, notify one per message held for quiet hours), and FerretDB reads all of it for
`due_at <= now`: 4,663 timers took 0.8 s a question under load. So each timer is also
listed in a per-minute slot (`<name>_slots`, `_id` = the minute), and "what is due?"
reads by `_id` the slots of the last few minutes only. The whole-collection question is
still asked, but rarely (`full_every`), whenever the clock moved on by more than the
slots cover (a start, a stop, a test's jump), and after this process set a time before
the minutes the slots cover: it catches what the slots may have missed.
A slot entry is a hint too: it is checked against the timer, and dropped once stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_shared.mongo import Document, upsert_by_id

SLOT_FORMAT = "%Y-%m-%dT%H:%M"
_NEVER = datetime.min.replace(tzinfo=UTC)  # the slot of no timer at all


def slot_of(moment: datetime) -> str:
    """The minute slot (UTC) a wake-up time is listed in; a naive time is taken as UTC,
    as the store returns it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(SLOT_FORMAT)


class DueTimers:
    """One wake-up time per owner id, in a collection of its own, listed by minute."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        *,
        recent_minutes: int = 5,
        full_every: timedelta = timedelta(minutes=5),
    ) -> None:
        self._collection = collection
        self._slots = collection.database[f"{collection.name}_slots"]
        self._recent = timedelta(minutes=recent_minutes)
        self._full_every = full_every
        self._last_now: datetime | None = None
        self._last_full: datetime | None = None

    async def ensure_indexes(self) -> None:
        """The due-time order (used by MongoDB; FerretDB v1 scans the small collection).
        Timers set before slots existed are not listed: the whole-collection question
        finds them, at the latest `full_every` after they fall due."""
        await self._collection.create_index([("due_at", ASCENDING)], name="due_at")

    async def set(self, owner_id: str, due_at: datetime) -> None:
        """Wake `owner_id` at `due_at` (replacing any earlier setting)."""
        # The timer first, then its listing: a reader dropping a stale entry re-reads the
        # timers it dropped (`_due_in_slot`), and sees this time if the listing it removed
        # was this one. A crash in between leaves an unlisted timer, which the first
        # question after a start (a whole-collection read) finds.
        await upsert_by_id(self._collection, owner_id, {"$set": {"due_at": due_at}})
        await upsert_by_id(self._slots, slot_of(due_at), {"$addToSet": {"owners": owner_id}})
        if self._last_now is not None and due_at < self._last_now - self._recent:
            self._last_full = None  # listed in a minute the slots no longer cover

    async def clear(self, owner_id: str) -> None:
        """Nothing is pending for `owner_id` any more."""
        await self._collection.delete_one({"_id": owner_id})

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Owners whose wake-up time is at or before `now`, earliest first."""
        full = (
            self._last_now is None
            or self._last_full is None
            or not self._last_now <= now <= self._last_now + self._recent
            or now - self._last_full >= self._full_every
        )
        self._last_now = now
        if full:
            self._last_full = now
            return await self._due_by_scan(now, limit)
        found: dict[str, datetime] = {}
        minute = now - self._recent
        while minute <= now and len(found) < limit:
            found |= await self._due_in_slot(slot_of(minute), now, limit - len(found))
            minute += timedelta(minutes=1)
        return sorted(found, key=lambda owner: found[owner])[:limit]

    async def _due_by_scan(self, now: datetime, limit: int) -> list[str]:
        cursor = (
            self._collection.find({"due_at": {"$lte": now}}, {"_id": 1})
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def _due_in_slot(self, slot: str, now: datetime, limit: int) -> dict[str, datetime]:
        """Up to `limit` due owners listed in one slot (in the order they were listed: a
        minute's worth of wake-ups, say 07:00 after quiet hours, can be many); entries
        no longer matching are dropped."""
        listing = await self._slots.find_one({"_id": slot})
        if listing is None:
            return {}
        due: dict[str, datetime] = {}
        stale = []
        for owner_id in listing["owners"]:
            timer = await self._collection.find_one({"_id": owner_id})
            if timer is None or slot_of(timer["due_at"]) != slot:
                stale.append(owner_id)  # cleared, or moved to another minute
            elif timer["due_at"] <= now:
                due[owner_id] = timer["due_at"]
                if len(due) >= limit:
                    break
        if stale:
            await self._slots.update_one({"_id": slot}, {"$pullAll": {"owners": stale}})
            # A timer set back into this minute while we looked had its listing (a no-op
            # $addToSet, or one landing before the pull) removed with the stale one: list
            # it again.
            back = [o for o in stale if slot_of(await self.get(o) or _NEVER) == slot]
            if back:
                await self._slots.update_one(
                    {"_id": slot}, {"$addToSet": {"owners": {"$each": back}}}
                )
            # An emptied slot goes; one listed in meanwhile keeps it.
            await self._slots.delete_one({"_id": slot, "owners": {"$size": 0}})
        return due

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
