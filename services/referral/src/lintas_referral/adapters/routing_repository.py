"""Case routings: one versioned document per case with its referrals and outbox.

Every change goes through the shared unit of work (`lintas_shared.unit_of_work`): one
conditional single-document update holding the new state, the processed event key and
the events it causes (in `outbox`), guarded by the version that was read. The questions
not asked by `_id` are answered from fields of the routing document itself, each with a
secondary index (as on MongoDB 7; the local FerretDB build serves them from it too):
- `next_due_at`: when the case next has something due (an offer to expire, a reminder),
  absent when nothing is; the scheduler's range query `next_due_at <= now`, sorted;
- `referral_ids`: the referrals of the case, for the partner API (a referral id never
  moves to another case, so the answer is also kept in a small in-process cache);
- `partner_ids`: partners ever offered one of the case's referrals (the partner's list);
- `open_partner_ids`: partners holding an open referral of the case (their load, which
  the partner's own document counts, see `MongoPartnerDirectory.claim`; the reconciler
  reads the open referrals by it, see `lintas_referral.partner_load`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from lintas_shared.unit_of_work import (
    OUTBOX_SINCE_FIELD,
    PROCESSED_FIELD,
    UNSET,
    VERSION_FIELD,
    InMemoryVersionedDocuments,
    MongoVersionedDocuments,
    OnCommit,
    UnitOfWork,
)
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_referral.domain.case_routing import OPEN_STATUSES, CaseRouting

#: Where routings written before the unit of work kept their processed event keys.
LEGACY_PROCESSED_FIELD = "processed"
#: Fields of the document that are not the aggregate's.
_BOOKKEEPING = (OUTBOX_FIELD, OUTBOX_SINCE_FIELD, PROCESSED_FIELD, LEGACY_PROCESSED_FIELD)
#: Referral id -> case id answers kept in memory (they never change).
REFERRAL_CACHE_SIZE = 10_000


class RoutingCodec:
    """`CaseRouting` <-> its document, with the query fields derived from the state."""

    def id_of(self, aggregate: CaseRouting) -> str:
        """The case id is the document's `_id`."""
        return aggregate.case_id

    async def encode(self, aggregate: CaseRouting) -> Document:
        """The state and its query fields; `processed_events` is only stored by an insert
        (the unit of work appends to it on every later write)."""
        doc: Document = aggregate.model_dump(
            mode="json", exclude={LEGACY_PROCESSED_FIELD, VERSION_FIELD}
        )
        doc["referral_ids"] = [r.id for r in aggregate.referrals]
        doc["partner_ids"] = sorted({r.partner_organisation_id for r in aggregate.referrals})
        doc["open_partner_ids"] = aggregate.open_partner_ids
        due = aggregate.next_due_at
        # Absent when nothing is due: the due index holds only cases with work ahead.
        doc["next_due_at"] = UNSET if due is None else due
        doc[PROCESSED_FIELD] = list(aggregate.processed)
        return doc

    async def decode(self, doc: Document) -> CaseRouting:
        """A stored routing, of this version or an earlier one (`processed` there)."""
        processed = [*doc.get(LEGACY_PROCESSED_FIELD, ()), *doc.get(PROCESSED_FIELD, ())]
        fields: dict[str, Any] = {k: v for k, v in doc.items() if k not in _BOOKKEEPING}
        fields[LEGACY_PROCESSED_FIELD] = processed
        fields[VERSION_FIELD] = int(doc.get(VERSION_FIELD, 0))
        return CaseRouting.model_validate(fields)


class _ReferralCases:
    """A bounded memory of which case holds a referral."""

    def __init__(self, size: int = REFERRAL_CACHE_SIZE) -> None:
        self._size = size
        self._known: OrderedDict[str, str] = OrderedDict()

    def get(self, referral_id: str) -> str | None:
        case_id = self._known.get(referral_id)
        if case_id is not None:
            self._known.move_to_end(referral_id)
        return case_id

    def put(self, referral_id: str, case_id: str) -> None:
        self._known[referral_id] = case_id
        self._known.move_to_end(referral_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


class MongoRoutingRepository:
    """The `RoutingRepository` on MongoDB (and FerretDB): its unit of work and queries."""

    def __init__(
        self,
        documents: MongoVersionedDocuments | AsyncCollection[Document],
        on_commit: OnCommit | None = None,
    ) -> None:
        if not isinstance(documents, MongoVersionedDocuments):
            documents = MongoVersionedDocuments(documents)
        self.documents = documents
        self._collection = documents.collection
        self._codec = RoutingCodec()
        self.work: UnitOfWork[CaseRouting] = UnitOfWork(documents, self._codec, on_commit=on_commit)
        self._referral_cases = _ReferralCases()

    async def ensure_indexes(self) -> None:
        """The indexes of every query not by `_id`, and the outbox's."""
        await self.documents.ensure_indexes()
        await self._collection.create_index([("next_due_at", ASCENDING)], name="next_due_at")
        await self._collection.create_index([("referral_ids", ASCENDING)], name="referral_ids")
        await self._collection.create_index([("partner_ids", ASCENDING)], name="partner_ids_1")
        await self._collection.create_index(
            [("open_partner_ids", ASCENDING)], name="open_partner_ids"
        )

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        return await self.work.get(case_id)

    async def raw(self, case_id: str) -> Document | None:
        """The stored document as it is (operators and tests)."""
        return await self.documents.read(case_id)

    async def case_of(self, referral_id: str) -> str | None:
        """The case holding a referral (by the `referral_ids` index, then from memory)."""
        known = self._referral_cases.get(referral_id)
        if known is not None:
            return known
        doc = await self._collection.find_one({"referral_ids": referral_id}, {"_id": 1})
        if doc is None:
            return None
        self._referral_cases.put(referral_id, doc["_id"])
        return str(doc["_id"])

    async def by_referral(self, referral_id: str) -> CaseRouting | None:
        """The routing holding a referral."""
        case_id = await self.case_of(referral_id)
        return None if case_id is None else await self.get(case_id)

    async def for_partner(self, partner_id: str) -> list[CaseRouting]:
        """Every routing with a referral ever offered to the partner."""
        unread = {OUTBOX_FIELD: 0, PROCESSED_FIELD: 0, LEGACY_PROCESSED_FIELD: 0}
        cursor = self._collection.find({"partner_ids": partner_id}, unread).sort("_id", ASCENDING)
        return [await self._codec.decode(doc) async for doc in cursor]

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Cases with an offer to expire or a reminder to send at or before `now`,
        earliest first: a range query on the `next_due_at` index."""
        cursor = (
            self._collection.find({"next_due_at": {"$lte": now}}, {"_id": 1})
            .sort("next_due_at", ASCENDING)
            .limit(limit)
        )
        return [doc["_id"] async for doc in cursor]

    async def open_referrals_by_partner(
        self, partner_ids: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        """For each partner, its open referrals (referral id -> case id), from the
        routings found by the `open_partner_ids` index: what a partner's load is
        reconciled with."""
        wanted = sorted(set(partner_ids))
        found: dict[str, dict[str, str]] = {p: {} for p in wanted}
        if not wanted:
            return found
        cursor = self._collection.find({"open_partner_ids": {"$in": wanted}}, {"referrals": 1})
        async for doc in cursor:
            _add_open(found, doc)
        return found


def _add_open(found: dict[str, dict[str, str]], doc: Document) -> None:
    for referral in doc.get("referrals", ()):
        partner_id = referral.get("partner_organisation_id")
        if partner_id in found and referral.get("status") in OPEN_STATUSES:
            found[partner_id][str(referral["id"])] = str(doc["_id"])


class InMemoryRoutingRepository:
    """The same repository on `InMemoryVersionedDocuments` (unit tests)."""

    def __init__(
        self,
        documents: InMemoryVersionedDocuments | None = None,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.documents = documents or InMemoryVersionedDocuments(name="routings")
        self._codec = RoutingCodec()
        self.work: UnitOfWork[CaseRouting] = UnitOfWork(
            self.documents, self._codec, on_commit=on_commit
        )

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        return await self.work.get(case_id)

    async def raw(self, case_id: str) -> Document | None:
        """The stored document."""
        return await self.documents.read(case_id)

    async def case_of(self, referral_id: str) -> str | None:
        """The case holding a referral."""
        for doc in self.documents.docs.values():
            if referral_id in doc.get("referral_ids", ()):
                return str(doc["_id"])
        return None

    async def by_referral(self, referral_id: str) -> CaseRouting | None:
        """The routing holding a referral."""
        case_id = await self.case_of(referral_id)
        return None if case_id is None else await self.get(case_id)

    async def for_partner(self, partner_id: str) -> list[CaseRouting]:
        """Routings with a referral ever offered to the partner."""
        docs = sorted(self.documents.docs.values(), key=lambda d: str(d["_id"]))
        return [await self._codec.decode(d) for d in docs if partner_id in d.get("partner_ids", ())]

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Cases with something due at or before `now`, earliest first."""
        due = [d for d in self.documents.docs.values() if d.get("next_due_at") is not None]
        due = [d for d in due if d["next_due_at"] <= now]
        due.sort(key=lambda d: d["next_due_at"])
        return [str(d["_id"]) for d in due[:limit]]

    async def open_referrals_by_partner(
        self, partner_ids: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        """For each partner, its open referrals (referral id -> case id)."""
        found: dict[str, dict[str, str]] = {p: {} for p in sorted(set(partner_ids))}
        for doc in self.documents.docs.values():
            _add_open(found, doc)
        return found
