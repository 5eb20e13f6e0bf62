"""Case routings in MongoDB: one document per case with its referrals and outbox.

Every write is a single-document update: the new state, the processed event id and the
events it causes (in `outbox`) together, guarded by the version that was read
(optimistic concurrency; no multi-document transactions, which FerretDB v1 ignores).
Top-level arrays (`referral_ids`, `partner_ids`, `open_partner_ids`) and `next_due_at`
exist for queries, since FerretDB v1 cannot filter on fields inside array elements.

FerretDB v1 also answers every query but `_id` equality by reading the whole collection,
so the hot questions are kept in small side collections keyed by `_id`, maintained
around each write (the routing document stays the truth; `repair` rebuilds them):
- `<name>_timers`: when each case next has something due (see `DueTimers`);
- `<name>_referrals`: referral id -> case id, for the partner API;
- `<name>_partner_load`: one row per (partner, case with an open referral to it); the
  insert or delete of a row decides, once, whether the partner's count moves;
- `<name>_partner_counts`: per partner, how many such rows there are (its load), read
  by `_id`: one tiny document however many cases are open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from lintas_shared.due_timers import DueTimers
from lintas_shared.envelope import CloudEvent
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document, update_by_id, upsert_by_id
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry, push_to_outbox
from lintas_shared.topics import REFERRALS
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lintas_referral.domain.case_routing import CaseRouting

log = get_logger(__name__)
#: Mongo's duplicate-key error code, the only bulk error an idempotent insert expects.
DUPLICATE_KEY = 11000


def _document(routing: CaseRouting) -> Document:
    doc = routing.model_dump(mode="json")
    doc["referral_ids"] = [r.id for r in routing.referrals]
    doc["partner_ids"] = sorted({r.partner_organisation_id for r in routing.referrals})
    doc["open_partner_ids"] = routing.open_partner_ids
    doc["next_due_at"] = routing.next_due_at
    return doc


def _load_row(partner_id: str, case_id: str) -> str:
    return f"{partner_id}|{case_id}"


class MongoRoutingRepository:
    """The `RoutingRepository` on MongoDB (and FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self._collection = collection
        self._on_write = on_write
        database, name = collection.database, collection.name
        self._timers = DueTimers(database[f"{name}_timers"])
        self._referral_cases = database[f"{name}_referrals"]
        self._partner_load = database[f"{name}_partner_load"]
        self._partner_counts = database[f"{name}_partner_counts"]

    async def ensure_indexes(self) -> None:
        """Indexes for the partner's list and the side collections (used by MongoDB)."""
        await self._collection.create_index([("partner_ids", ASCENDING)])
        await self._timers.ensure_indexes()

    async def insert(self, routing: CaseRouting, events: Sequence[CloudEvent]) -> bool:
        """Store a new case's routing; False if the case was already routed."""
        doc = {"_id": routing.case_id, **_document(routing)}
        doc[OUTBOX_FIELD] = [outbox_entry(REFERRALS, e) for e in events]
        await self._before_write(routing)
        try:
            await self._collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        await self._after_write(routing)
        self._on_write(routing.case_id)
        return True

    async def save(
        self, routing: CaseRouting, expected_version: int, events: Sequence[CloudEvent]
    ) -> bool:
        """Write the new state and its events if nobody changed it since it was read."""
        routing.version = expected_version + 1
        update: Document = {"$set": _document(routing)}
        if events:
            update.update(push_to_outbox(*(outbox_entry(REFERRALS, e) for e in events)))
        await self._before_write(routing)
        saved = await update_by_id(
            self._collection, routing.case_id, update, where={"version": expected_version}
        )
        if not saved:
            routing.version = expected_version
            return False
        await self._after_write(routing)
        self._on_write(routing.case_id)
        return True

    async def _before_write(self, routing: CaseRouting) -> None:
        # What must never be missing once the routing is written: the way from a referral
        # id to its case (its offer event may reach a partner at once), and the timer.
        await self._index_referrals(routing.case_id, [r.id for r in routing.referrals])
        if routing.next_due_at is not None:
            await self._timers.set(routing.case_id, routing.next_due_at)

    async def _after_write(self, routing: CaseRouting) -> None:
        if routing.next_due_at is None:
            await self._timers.clear(routing.case_id)
        open_partners = set(routing.open_partner_ids)
        for partner_id in {r.partner_organisation_id for r in routing.referrals}:
            row = _load_row(partner_id, routing.case_id)
            if partner_id in open_partners:
                try:
                    await self._partner_load.insert_one({"_id": row, "partner_id": partner_id})
                except DuplicateKeyError:
                    continue  # counted already (a redelivery, or the other instance)
                await self._count(partner_id, +1)
            elif (await self._partner_load.delete_one({"_id": row})).deleted_count:
                await self._count(partner_id, -1)

    async def _count(self, partner_id: str, change: int, *, to: int | None = None) -> None:
        # A crash between a row's write and its count leaves the count off by one until
        # the next start (`repair` counts the rows again).
        update = {"$inc": {"open": change}} if to is None else {"$set": {"open": to}}
        await upsert_by_id(self._partner_counts, partner_id, update)

    async def _index_referrals(self, case_id: str, referral_ids: Iterable[str]) -> None:
        rows = [{"_id": referral_id, "case_id": case_id} for referral_id in referral_ids]
        await self._insert_ignoring_duplicates(self._referral_cases, rows)

    @staticmethod
    async def _insert_ignoring_duplicates(
        collection: AsyncCollection[Document], rows: Sequence[Document]
    ) -> None:
        if not rows:
            return
        try:
            await collection.insert_many(list(rows), ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        doc = await self._collection.find_one({"_id": case_id}, {OUTBOX_FIELD: 0})
        return None if doc is None else CaseRouting.model_validate(doc)

    async def raw(self, case_id: str) -> Document | None:
        """The stored document as it is (operators and tests)."""
        return await self._collection.find_one({"_id": case_id})

    async def by_referral(self, referral_id: str) -> CaseRouting | None:
        """The routing holding a referral."""
        row = await self._referral_cases.find_one({"_id": referral_id})
        if row is not None:
            return await self.get(row["case_id"])
        # Not indexed (a routing written before the index existed): look it up the slow
        # way once, and index it for next time. Unknown ids also end here.
        doc = await self._collection.find_one({"referral_ids": referral_id}, {OUTBOX_FIELD: 0})
        if doc is None:
            return None
        routing = CaseRouting.model_validate(doc)
        await self._index_referrals(routing.case_id, [r.id for r in routing.referrals])
        return routing

    async def for_partner(self, partner_id: str) -> list[CaseRouting]:
        """Every routing with a referral ever offered to the partner."""
        cursor = self._collection.find({"partner_ids": partner_id}, {OUTBOX_FIELD: 0})
        return [CaseRouting.model_validate(doc) async for doc in cursor.sort("_id", ASCENDING)]

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Cases with an offer to expire or a reminder to send at or before `now` (or a
        stale timer: the caller re-reads the routing, and its next write moves the timer)."""
        return await self._timers.due(now, limit)

    async def open_referrals(self, partner_ids: Iterable[str]) -> dict[str, int]:
        """How many cases hold an open referral with each partner (its load)."""
        counts = {}
        for partner_id in partner_ids:
            doc = await self._partner_counts.find_one({"_id": partner_id})
            counts[partner_id] = max(0, int(doc.get("open", 0))) if doc else 0
        return counts

    async def repair(self) -> None:
        """At start-up: bring the timers and the partner load in line with the routings
        (after a crash between a routing's write and theirs, or data from before them).
        One pass over the routings; it never removes a timer (see `DueTimers`)."""
        due: dict[str, datetime] = {}
        load: set[str] = set()
        projection = {"next_due_at": 1, "open_partner_ids": 1}
        async for doc in self._collection.find({}, projection):
            if doc.get("next_due_at") is not None:
                due[doc["_id"]] = doc["next_due_at"]
            load.update(_load_row(p, doc["_id"]) for p in doc.get("open_partner_ids", []))
        timers_set = await self._timers.ensure_all(due)
        rows = {row["_id"]: row["partner_id"] async for row in self._partner_load.find({})}
        missing = [{"_id": r, "partner_id": r.split("|", 1)[0]} for r in load - rows.keys()]
        await self._insert_ignoring_duplicates(self._partner_load, missing)
        extra = [r for r in rows if r not in load]
        if extra:
            await self._partner_load.delete_many({"_id": {"$in": extra}})
        # The rows now match the routings: set each partner's count to its rows.
        counts = Counter(row.split("|", 1)[0] for row in load)
        stored = {d["_id"]: d.get("open") async for d in self._partner_counts.find({})}
        recounted = 0
        for partner_id in counts.keys() | stored.keys():
            if stored.get(partner_id) != counts[partner_id]:
                await self._count(partner_id, 0, to=counts[partner_id])
                recounted += 1
        if timers_set or missing or extra or recounted:
            log.info(
                "routing side collections repaired",
                timers_set=timers_set,
                load_rows_added=len(missing),
                load_rows_removed=len(extra),
                partner_counts_set=recounted,
            )
