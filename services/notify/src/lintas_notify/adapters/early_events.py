"""Events that arrived before the case they concern, kept until the case is known.

Case and referral events travel on two topics, read by two consumers: a referral event
can overtake its case's `submitted` event (notify was behind on one topic, or restarted).
Blocking the partition until then would stall every other case; parking the event in
the DLQ would lose a message the worker needs. So it waits here, keyed by its
(ce_source, ce_id), and is handled when the case arrives.

Two collections, both read by `_id` only:
- `early_events`: one document per waiting event;
- `early_events_by_case`: per case, the keys of its waiting events.
The second exists because FerretDB v1 answers `{"case_id": ...}` by reading every
waiting event, and notify asks that for every case it learns of: when notify is far
behind (a bulk import), thousands wait, and each case cost a read of all of them.
The per-case list is written before the event and trimmed after it is gone, so a crash
between the two leaves a key without an event (skipped), never an event without a key.
"""

from __future__ import annotations

from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document, upsert_by_id
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class MongoEarlyEvents:
    """`early_events` and its per-case list `early_events_by_case`."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._by_case = collection.database[f"{collection.name}_by_case"]

    async def ensure_indexes(self) -> None:
        """List every waiting event under its case (once, for events kept before the
        per-case list existed; later ones are listed as they are kept)."""
        listed = {key async for doc in self._by_case.find({}) for key in doc["keys"]}
        async for doc in self._collection.find({}, {"case_id": 1}):
            if doc["_id"] not in listed:
                await self._list(doc["case_id"], doc["_id"])

    async def keep(self, case_id: str, event: CloudEvent, now: datetime) -> None:
        """Keep an event until its case is known (idempotent)."""
        await self._list(case_id, event.dedupe_key)
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
        listing = await self._by_case.find_one({"_id": case_id})
        docs = []
        for key in [] if listing is None else listing["keys"]:
            doc = await self._collection.find_one({"_id": key})
            if doc is not None:  # None: handled already, or a crash before it was kept
                docs.append(doc)
        docs.sort(key=lambda doc: doc["kept_at"])
        return [CloudEvent.model_validate(doc["event"]) for doc in docs]

    async def done(self, event: CloudEvent) -> None:
        """The event was handled: forget it."""
        doc = await self._collection.find_one_and_delete({"_id": event.dedupe_key})
        if doc is not None:
            await self._unlist(doc["case_id"], event.dedupe_key)

    async def drop_case(self, case_id: str) -> None:
        """Erasure: nothing more will be done for this case."""
        listing = await self._by_case.find_one({"_id": case_id})
        for key in [] if listing is None else listing["keys"]:
            await self._collection.delete_one({"_id": key})
        await self._by_case.delete_one({"_id": case_id})

    async def _list(self, case_id: str, key: str) -> None:
        await upsert_by_id(self._by_case, case_id, {"$addToSet": {"keys": key}})

    async def _unlist(self, case_id: str, key: str) -> None:
        await self._by_case.update_one({"_id": case_id}, {"$pull": {"keys": key}})
        # An emptied list goes; a key added meanwhile keeps it (the filter wants none).
        await self._by_case.delete_one({"_id": case_id, "keys": {"$size": 0}})
