"""What notify keeps about each case: how to reach the worker, and the case's stage.

The phone is kept only sealed with the case key (as it came in the event); lookups by
phone use notify's own look-up hash (`lintas_notify.phones`), never the event's. Erasure
leaves a tombstone, without the hash, so late events are recognised.

Case and referral events travel on two topics, read by two consumers: a referral event
can overtake its case's `submitted` event. Such an event waits inside the case's own
document, in its `waiting` array (keys in `waiting_keys`); an upsert makes a document
holding only those until the profile arrives. It is handled when the case's `submitted`
event fills the profile in: the insert that stores a new profile costs nothing more when
nothing waits, and no other collection is read for it.
"""

from __future__ import annotations

from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.events import CaseSubmitted, WorkerInfo
from lintas_shared.mongo import CoalescingInserter, CoalescingUpdater, Document, update_by_id
from lintas_shared.values import ConsentPurpose
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_notify.domain.profile import CaseProfile
from lintas_notify.domain.stage import Stage
from lintas_notify.ports import Waiting

__all__ = ["CaseProfile", "MongoCaseProfiles", "Waiting"]


def _worker_fields(worker: WorkerInfo, phone_hash: str) -> Document:
    return {
        "phone": worker.phone,
        "phone_hash": phone_hash,
        "language": worker.preferred_language,
        "current_country": worker.current_country,
        "time_zone": worker.time_zone,
    }


def _waiting(doc: Document) -> list[Waiting]:
    entries = sorted(doc.get("waiting") or [], key=lambda e: e["kept_at"])
    return [Waiting(CloudEvent.model_validate(e["event"]), e) for e in entries]


class MongoCaseProfiles:
    """Case profiles on MongoDB (and FerretDB)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._inserts = CoalescingInserter(collection)  # a batch's new cases: one command
        self._stages = CoalescingUpdater(collection)  # a batch's stage moves: one command

    async def ensure_indexes(self) -> None:
        """Lookups by reference (STATUS) and by phone hash (language of a reply)."""
        await self._collection.create_index("reference")
        await self._collection.create_index("phone_hash")

    async def add(
        self, case: CaseSubmitted, phone_hash: str
    ) -> tuple[CaseProfile | None, list[Waiting]]:
        """Remember a submitted case and the look-up hash of its phone (idempotent: a
        redelivery changes nothing); the profile as stored (None if it was erased) and the
        events that waited for it, oldest first (each to be handled, then `done`)."""
        fields: Document = {
            "reference": case.reference,
            **_worker_fields(case.worker, phone_hash),
            "details_at": case.submitted_at,
            "sms_consent": ConsentPurpose.SMS_UPDATES in case.consent.purposes,
            "stage": Stage.RECEIVED.value,
            "stage_at": case.submitted_at,
            "erased": False,
        }
        doc: Document | None = {"_id": case.case_id, **fields}
        try:
            await self._inserts.insert_one(dict(doc or {}))
        except DuplicateKeyError:
            # Known before: a redelivery, an erased case, or events that waited for it.
            doc = await self._collection.find_one_and_update(
                {"_id": case.case_id, "reference": {"$exists": False}, "erased": {"$ne": True}},
                {"$set": fields},
                return_document=ReturnDocument.AFTER,
            ) or await self._collection.find_one({"_id": case.case_id})
        if doc is None or doc.get("erased"):
            return None, []
        return _profile(doc), _waiting(doc)

    async def keep_waiting(
        self, case_id: str, event: CloudEvent, now: datetime
    ) -> CaseProfile | bool | None:
        """Keep an event until its case's profile arrives (idempotent); None when kept,
        else the state found: the profile that arrived meanwhile, or False (erased)."""
        entry = {"key": event.dedupe_key, "event": event.model_dump(mode="json"), "kept_at": now}
        try:
            await self._collection.update_one(
                {
                    "_id": case_id,
                    "reference": {"$exists": False},
                    "erased": {"$ne": True},
                    # Its own array of keys: FerretDB v1 matches no `$ne` on a path into
                    # an array of documents (`waiting.key`).
                    "waiting_keys": {"$ne": event.dedupe_key},
                },
                {"$push": {"waiting": entry, "waiting_keys": event.dedupe_key}},
                upsert=True,
            )
        except DuplicateKeyError:
            # Kept before, or the profile (or its tombstone) is there now. MongoDB 7 does
            # not retry an upsert whose filter has `$exists`/`$ne`, so two upserts racing
            # to create the document also land here; reading that as "kept" is right
            # only because a case's early events all come from one topic, keyed by case,
            # so one consumer handles them one at a time, in order.
            state = await self.state(case_id)
            return state if state is not None else None
        return None

    async def done(self, case_id: str, waiting: Waiting) -> None:
        """A waiting event was handled: forget it (the stored entry, as read)."""
        await self._collection.update_one(
            {"_id": case_id},
            {"$pull": {"waiting": waiting.entry, "waiting_keys": waiting.event.dedupe_key}},
        )

    async def correct_worker(
        self, case_id: str, worker: WorkerInfo, phone_hash: str, at: datetime
    ) -> None:
        """Replace the worker's contact details, unless a newer correction is already in."""
        await update_by_id(
            self._collection,
            case_id,
            {"$set": {**_worker_fields(worker, phone_hash), "details_at": at}},
            where={"erased": False, "details_at": {"$lte": at}},
        )

    async def set_stage(self, case_id: str, stage: Stage, at: datetime) -> bool:
        """Move the case's stage, unless a later event already moved it (topics interleave);
        False when no live profile was moved."""
        # Idempotent: once made, its filter still holds (`stage_at` is `at`).
        return await self._stages.update_one(
            {"_id": case_id, "erased": False, "stage_at": {"$lte": at}},
            {"$set": {"stage": stage.value, "stage_at": at}},
        )

    async def erase(self, case_id: str) -> None:
        """Forget everything but the fact that the case existed and was erased."""
        await self._collection.replace_one(
            {"_id": case_id}, {"_id": case_id, "erased": True}, upsert=True
        )

    async def state(self, case_id: str) -> CaseProfile | bool | None:
        """The profile; False if erased; None if notify has not heard of the case."""
        doc = await self._collection.find_one({"_id": case_id})
        if doc is None:
            return None
        if doc.get("erased"):
            return False
        if "reference" not in doc:
            return None  # only events waiting for it
        return _profile(doc)

    async def by_reference(self, reference: str) -> CaseProfile | None:
        """The (not erased) case with this reference."""
        doc = await self._collection.find_one({"reference": reference, "erased": False})
        return None if doc is None else _profile(doc)

    async def language_for_phone(self, phone_hash: str) -> str | None:
        """The preferred language on the most recent case of this phone."""
        cursor = (
            self._collection.find({"phone_hash": phone_hash, "erased": False}, {"language": 1})
            .sort("details_at", DESCENDING)
            .limit(1)
        )
        async for doc in cursor:
            return str(doc["language"])
        return None

    async def case_ids_for_phone(self, phone_hash: str) -> list[str]:
        """Every (not erased) case of this phone."""
        cursor = self._collection.find({"phone_hash": phone_hash, "erased": False}, {"_id": 1})
        return [doc["_id"] async for doc in cursor]


def _profile(doc: Document) -> CaseProfile:
    return CaseProfile(
        case_id=doc["_id"],
        reference=doc["reference"],
        phone_sealed=doc["phone"],
        phone_hash=doc["phone_hash"],
        language=doc["language"],
        current_country=doc["current_country"],
        time_zone=doc.get("time_zone"),
        sms_consent=bool(doc.get("sms_consent")),
        stage=Stage(doc["stage"]),
    )
