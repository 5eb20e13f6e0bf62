"""Cases in MongoDB: one document per case, carrying its outbox and processed events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from lintas_shared.topics import CASES
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_intake.domain.case import Case, CaseStatus, ReferralSummary
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.handlers import DuplicateExternalRefError, DuplicateReferenceError


def _to_document(case: Case) -> Document:
    return {
        "_id": case.id,
        "reference": case.reference,
        "organisation_id": case.organisation_id,
        "external_ref": case.submission.external_ref,
        "submission": case.submission.model_dump(mode="json"),
        "submitted_at": case.submitted_at,
        "updated_at": case.updated_at,
        "status": case.status.value,
        "status_reason": case.status_reason,
        "referral": None
        if case.referral is None
        else {
            "referral_id": case.referral.referral_id,
            "partner_organisation_id": case.referral.partner_organisation_id,
            "country": case.referral.country,
            "offered_at": case.referral.offered_at,
        },
        "version": case.version,
        "processed_events": list(case.processed_events),
    }


def _from_document(doc: Document) -> Case:
    referral = doc.get("referral")
    return Case(
        id=doc["_id"],
        reference=doc["reference"],
        organisation_id=doc["organisation_id"],
        submission=CaseSubmission.model_validate(doc["submission"]),
        submitted_at=doc["submitted_at"],
        updated_at=doc["updated_at"],
        status=CaseStatus(doc["status"]),
        status_reason=doc.get("status_reason"),
        referral=None if referral is None else ReferralSummary(**referral),
        version=doc["version"],
        processed_events=tuple(doc.get("processed_events", ())),
    )


class MongoCaseRepository:
    """The `CaseRepository` on MongoDB (and FerretDB): single-document atomic writes."""

    def __init__(
        self, collection: AsyncCollection[Document], on_write: Callable[[], None] = lambda: None
    ) -> None:
        self._collection = collection
        self._on_write = on_write

    async def ensure_indexes(self) -> None:
        """Unique reference; unique external_ref per organisation."""
        await self._collection.create_index(
            [("reference", ASCENDING)], unique=True, name="reference_unique"
        )
        await self._collection.create_index(
            [("organisation_id", ASCENDING), ("external_ref", ASCENDING)],
            unique=True,
            name="organisation_external_ref_unique",
        )

    async def add(self, case: Case, events: Sequence[CloudEvent]) -> None:
        """Insert a new case with its events in its outbox."""
        doc = _to_document(case)
        doc[OUTBOX_FIELD] = [outbox_entry(CASES, e) for e in events]
        try:
            await self._collection.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._collection.find_one(
                {
                    "organisation_id": case.organisation_id,
                    "external_ref": case.submission.external_ref,
                },
                {"_id": 1},
            )
            if existing is not None:
                raise DuplicateExternalRefError(existing["_id"]) from None
            raise DuplicateReferenceError from None
        self._on_write()

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None:
        """The case, or None; with `organisation_id`, only if that organisation owns it."""
        query: dict[str, Any] = {"_id": case_id}
        if organisation_id is not None:
            query["organisation_id"] = organisation_id
        doc = await self._collection.find_one(query, {OUTBOX_FIELD: 0})
        return None if doc is None else _from_document(doc)

    async def save(self, case: Case, expected_version: int, events: Sequence[CloudEvent]) -> bool:
        """Write the case if nobody changed it since `expected_version`; False otherwise."""
        doc = _to_document(case)
        del doc["_id"]
        update: Document = {"$set": doc}
        if events:
            update["$push"] = {OUTBOX_FIELD: {"$each": [outbox_entry(CASES, e) for e in events]}}
        result = await self._collection.update_one(
            {"_id": case.id, "version": expected_version}, update
        )
        if result.modified_count and events:
            self._on_write()
        return result.modified_count == 1
