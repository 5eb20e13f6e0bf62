"""Case routings in MongoDB: one document per case with its referrals and outbox.

Every write is a single-document update: the new state, the processed event id and the
events it causes (in `outbox`) together, guarded by the version that was read
(optimistic concurrency; no multi-document transactions, which FerretDB v1 ignores).
Top-level arrays (`referral_ids`, `partner_ids`, `open_partner_ids`) and `next_due_at`
exist for queries, since FerretDB v1 cannot filter on fields inside array elements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry, push_to_outbox
from lintas_shared.topics import REFERRALS
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_referral.domain.case_routing import CaseRouting


def _document(routing: CaseRouting) -> Document:
    doc = routing.model_dump(mode="json")
    doc["referral_ids"] = [r.id for r in routing.referrals]
    doc["partner_ids"] = sorted({r.partner_organisation_id for r in routing.referrals})
    doc["open_partner_ids"] = routing.open_partner_ids
    doc["next_due_at"] = routing.next_due_at
    return doc


class MongoRoutingRepository:
    """The `RoutingRepository` on MongoDB (and FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self._collection = collection
        self._on_write = on_write

    async def ensure_indexes(self) -> None:
        """Indexes for the partner's list, referral look-ups, load and the scheduler."""
        await self._collection.create_index([("referral_ids", ASCENDING)])
        await self._collection.create_index([("partner_ids", ASCENDING)])
        await self._collection.create_index([("open_partner_ids", ASCENDING)])
        await self._collection.create_index([("next_due_at", ASCENDING)])

    async def insert(self, routing: CaseRouting, events: Sequence[CloudEvent]) -> bool:
        """Store a new case's routing; False if the case was already routed."""
        doc = {"_id": routing.case_id, **_document(routing)}
        doc[OUTBOX_FIELD] = [outbox_entry(REFERRALS, e) for e in events]
        try:
            await self._collection.insert_one(doc)
        except DuplicateKeyError:
            return False
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
        result = await self._collection.update_one(
            {"_id": routing.case_id, "version": expected_version}, update
        )
        if result.modified_count != 1:
            routing.version = expected_version
            return False
        self._on_write(routing.case_id)
        return True

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        doc = await self._collection.find_one({"_id": case_id}, {OUTBOX_FIELD: 0})
        return None if doc is None else CaseRouting.model_validate(doc)

    async def raw(self, case_id: str) -> Document | None:
        """The stored document as it is (operators and tests)."""
        return await self._collection.find_one({"_id": case_id})

    async def by_referral(self, referral_id: str) -> CaseRouting | None:
        """The routing holding a referral."""
        doc = await self._collection.find_one({"referral_ids": referral_id}, {OUTBOX_FIELD: 0})
        return None if doc is None else CaseRouting.model_validate(doc)

    async def for_partner(self, partner_id: str) -> list[CaseRouting]:
        """Every routing with a referral ever offered to the partner."""
        cursor = self._collection.find({"partner_ids": partner_id}, {OUTBOX_FIELD: 0})
        return [CaseRouting.model_validate(doc) async for doc in cursor.sort("_id", ASCENDING)]

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Cases with an offer to expire or a reminder to send at or before `now`."""
        cursor = self._collection.find({"next_due_at": {"$lte": now}}, {"_id": 1}).limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def open_referrals(self, partner_id: str) -> int:
        """How many cases hold an open referral with the partner (its load)."""
        return await self._collection.count_documents({"open_partner_ids": partner_id})
