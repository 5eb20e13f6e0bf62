"""Cases in MongoDB: one document per case, personal fields sealed with the case's key.

The document also carries the case's outbox (events waiting for the relay) and the
processed event keys, so every state change, its events and its idempotency record are
one single-document write. The writes are the unit of work's
(`lintas_shared.unit_of_work`, over `MongoVersionedDocuments`); `CaseCodec` maps a case
to its document and back; this module adds the queries that are not by `_id`, each
served by an index, and the batch insert.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from lintas_shared.crypto import CaseKeyMissingError, DataKey, RememberingKey
from lintas_shared.mongo import Document, find_by_id, record_fields
from lintas_shared.unit_of_work import (
    OUTBOX_FIELD,
    OUTBOX_SINCE_FIELD,
    RESERVED_FIELDS,
    UNSET,
    VERSION_FIELD,
    DuplicateDocumentError,
    MongoVersionedDocuments,
)
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_intake.adapters.sealing import open_submission, open_value, seal_submission
from lintas_intake.domain.case import Case, CaseStatus, ReferralSummary
from lintas_intake.domain.indicators import UNKNOWN, CaseFacts, derive_worker_facts
from lintas_intake.domain.records import (
    ConsentRecord,
    DocumentRecord,
    Note,
    Outcome,
    TimelineEntry,
)
from lintas_intake.domain.submission import CaseSubmission, Consent
from lintas_intake.handlers import (
    CaseCursor,
    CaseFilters,
    CaseKeys,
    CasePage,
    CaseSort,
    CaseSummary,
    EarlierCase,
    IdempotencyRecord,
    NewCase,
)

_NO_OUTBOX = {OUTBOX_FIELD: 0}
#: Cases whose field tokens the codec remembers (the ones used most recently), and for
#: how long after their last use.
REMEMBERED_KEYS = 1_000
REMEMBERED_SECONDS = 60.0
#: Timeline entries whose detail (after "<what>: ") is a partner's own words, which may
#: name the worker: sealed with the case's key at rest, kept only as the "what" without.
_PARTNER_WORDS = frozenset({"org.lintas.referral.declined"})
_DETAIL_FIELD = "timeline.detail"


def _timeline_doc(entry: TimelineEntry, key: DataKey | None) -> Document:
    doc = record_fields(entry)
    if entry.type in _PARTNER_WORDS:
        what, _, detail = entry.summary.partition(": ")
        doc["summary"] = what
        if detail and key is not None:
            doc["detail"] = key.encrypt(_DETAIL_FIELD, detail)
    return doc


def _open_timeline(doc: Document, key: DataKey | None) -> TimelineEntry:
    fields = {k: v for k, v in doc.items() if k != "detail"}
    sealed = doc.get("detail")
    if sealed is not None and key is not None:
        fields["summary"] = f"{fields['summary']}: {open_value(key, _DETAIL_FIELD, sealed)}"
    return TimelineEntry(**fields)


@dataclass
class _Opened:
    """The sealed forms of one case's submission and consents last read or written by
    the codec, with the models they hold. A change that leaves them alone (news on the
    timeline, a note) finds the same sealed values again: the same frozen models come
    back without opening and validating them, and go out as the same sealed values
    without dumping and sealing them (a fourteenth of intake's CPU at load)."""

    submission: tuple[Document, CaseSubmission] | None = None
    consents: dict[str, tuple[Document, Consent]] = field(default_factory=dict)

    def open_submission(self, sealed: Document, key: DataKey) -> CaseSubmission:
        known = self.submission
        if known is not None and known[0] == sealed:
            return known[1]
        submission = CaseSubmission.model_validate(open_submission(sealed, key))
        self.submission = (sealed, submission)
        return submission

    def seal_submission(self, submission: CaseSubmission, key: DataKey) -> Document:
        known = self.submission
        if known is not None and known[1] is submission:
            return known[0]
        sealed = seal_submission(submission.model_dump(mode="json"), key)
        self.submission = (sealed, submission)
        return sealed

    def open_consent(self, record_id: str, sealed: Document, key: DataKey | None) -> Consent:
        known = self.consents.get(record_id)
        if known is not None and known[0] == sealed:
            return known[1]
        opened = sealed
        if key is not None:
            name = f"consents.{record_id}.taken_by"
            opened = {**sealed, "taken_by": open_value(key, name, sealed["taken_by"])}
        consent = Consent.model_validate(opened)
        self.consents[record_id] = (sealed, consent)
        return consent

    def seal_consent(self, record_id: str, consent: Consent, key: DataKey | None) -> Document:
        known = self.consents.get(record_id)
        if known is not None and known[1] is consent:
            return known[0]
        sealed = consent.model_dump(mode="json")
        if key is not None:  # who took it identifies the case's NGO staff
            name = f"consents.{record_id}.taken_by"
            sealed["taken_by"] = key.encrypt(name, sealed["taken_by"])
        self.consents[record_id] = (sealed, consent)
        return sealed


def _consent_doc(record: ConsentRecord, key: DataKey | None, opened: _Opened) -> Document:
    consent = record.consent
    return {
        "id": record.id,
        "consent": None if consent is None else opened.seal_consent(record.id, consent, key),
        "recorded_at": record.recorded_at,
        "recorded_by": record.recorded_by,
        "withdrawn_at": record.withdrawn_at,
    }


def _to_document(case: Case, key: DataKey | None, opened: _Opened | None = None) -> Document:
    opened = _Opened() if opened is None else opened
    sealed = None
    if case.submission is not None:
        assert key is not None
        sealed = opened.seal_submission(case.submission, key)
    submission = case.submission
    return {
        "_id": case.id,
        "reference": case.reference,
        "organisation_id": case.organisation_id,
        "external_ref": case.external_ref,
        "submission": sealed,
        # Denormalised, non-personal facts for filters and indicators.
        "employment_country": None if submission is None else submission.employment.country,
        "claim_types": []
        if submission is None
        else sorted({c.type.value for c in submission.claims}),
        # Who the worker is, as the indicators see it (age band, disability yes/no...):
        # derived here, never the answers, which stay sealed in `submission`.
        "worker_facts": derive_worker_facts(submission, case.submitted_at),
        "submitted_at": case.submitted_at,
        "updated_at": case.updated_at,
        "status": case.status.value,
        "status_reason": case.status_reason,
        "referral": None if case.referral is None else record_fields(case.referral),
        # The referral's deadline (ISO date: sorts as it reads), for the list's order.
        "filing_deadline": None if case.referral is None else case.referral.deadline,
        "consents": [_consent_doc(c, key, opened) for c in case.consents],
        "notes": [
            {
                "id": n.id,
                "text": key.encrypt(f"notes.{n.id}", n.text) if key else None,
                "author_organisation_id": n.author_organisation_id,
                "at": n.at,
            }
            for n in case.notes
        ],
        "documents": [
            {
                **record_fields(d),
                "file_name": key.encrypt(f"documents.{d.id}", d.file_name) if key else None,
                # A path or URL often names the worker or the NGO's folder for her.
                "location": key.encrypt(f"documents.{d.id}.location", d.location) if key else None,
            }
            for d in case.documents
        ],
        "outcome": None
        if case.outcome is None
        else {
            **record_fields(case.outcome),
            # Sub-documents, not pairs: FerretDB v1 stores no nested arrays.
            "amounts_recovered": [
                {"currency": c, "value": v} for c, v in case.outcome.amounts_recovered
            ],
        },
        "timeline": [_timeline_doc(t, key) for t in case.timeline],
        "sms_opted_out": case.sms_opted_out,
        "sms_preference_at": case.sms_preference_at,
        "sms_preference_channel": case.sms_preference_channel,
        # Its own index (organisation_id, idempotency_key) is unique: never left empty.
        "idempotency_key": case.idempotency_key or f"auto:{case.id}",
        # The body's hash could confirm a guessed body (issue #15): gone with the case.
        "request_hash": UNSET if case.request_hash is None else case.request_hash,
    }


def _from_document(doc: Document, key: DataKey | None, opened: _Opened | None = None) -> Case:
    opened = _Opened() if opened is None else opened
    sealed = doc.get("submission")
    submission = None
    if sealed is not None and key is not None:
        submission = opened.open_submission(sealed, key)
    referral = doc.get("referral")
    outcome = doc.get("outcome")
    return Case(
        id=doc["_id"],
        reference=doc["reference"],
        organisation_id=doc["organisation_id"],
        external_ref=doc["external_ref"],
        submission=submission,
        submitted_at=doc["submitted_at"],
        updated_at=doc["updated_at"],
        status=CaseStatus(doc["status"]),
        status_reason=doc.get("status_reason"),
        referral=None if referral is None else ReferralSummary(**referral),
        consents=tuple(
            ConsentRecord(
                id=c["id"],
                recorded_at=c["recorded_at"],
                recorded_by=c["recorded_by"],
                withdrawn_at=c.get("withdrawn_at"),
                consent=None
                if c.get("consent") is None
                else opened.open_consent(c["id"], c["consent"], key),
            )
            for c in doc.get("consents", [])
        ),
        notes=tuple(
            Note(
                id=n["id"],
                text=key.decrypt(f"notes.{n['id']}", n["text"]),
                author_organisation_id=n["author_organisation_id"],
                at=n["at"],
            )
            for n in doc.get("notes", [])
            if key is not None
        ),
        documents=tuple(
            DocumentRecord(
                **{
                    **d,
                    "file_name": key.decrypt(f"documents.{d['id']}", d["file_name"]),
                    "location": open_value(key, f"documents.{d['id']}.location", d["location"]),
                }
            )
            for d in doc.get("documents", [])
            if key is not None
        ),
        outcome=None
        if outcome is None
        else Outcome(
            outcome=outcome["outcome"],
            closed_at=outcome["closed_at"],
            closed_by=outcome["closed_by"],
            amounts_recovered=_amounts(outcome),
        ),
        timeline=tuple(_open_timeline(t, key) for t in doc.get("timeline", [])),
        version=doc[VERSION_FIELD],
        sms_opted_out=doc.get("sms_opted_out", False),
        sms_preference_at=doc.get("sms_preference_at"),
        sms_preference_channel=doc.get("sms_preference_channel"),
        idempotency_key=doc.get("idempotency_key"),
        request_hash=doc.get("request_hash"),
    )


def _amounts(outcome: Document) -> tuple[tuple[str, str], ...]:
    return tuple((a["currency"], a["value"]) for a in outcome.get("amounts_recovered", []))


_SUMMARY_PROJECTION = {
    "_id": 1,
    "reference": 1,
    "external_ref": 1,
    "status": 1,
    "submitted_at": 1,
    "updated_at": 1,
    "employment_country": 1,
    "claim_types": 1,
    "filing_deadline": 1,
    "referral": 1,
}


def _summary(doc: Document) -> CaseSummary:
    deadline = doc.get("filing_deadline")
    return CaseSummary(
        id=doc["_id"],
        reference=doc["reference"],
        external_ref=doc["external_ref"],
        status=CaseStatus(doc["status"]),
        submitted_at=doc["submitted_at"],
        updated_at=doc["updated_at"],
        employment_country=doc.get("employment_country"),
        claim_types=tuple(doc.get("claim_types", ())),
        deadline=None if deadline is None else date.fromisoformat(deadline),
        deadline_verified=(doc.get("referral") or {}).get("deadline_verified"),
    )


class CaseCodec:
    """A case to its document and back (`DocumentCodec[Case]`): personal fields sealed
    with the case's key, which an erased case no longer has (nor needs)."""

    def __init__(
        self,
        keys: CaseKeys,
        *,
        remember: int = REMEMBERED_KEYS,
        remember_seconds: float = REMEMBERED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._remember = remember
        self._remember_seconds = remember_seconds
        self._clock = clock
        # case id -> (last used, its key remembering the tokens of its fields, see
        # RememberingKey; what it opened and sealed, see _Opened), least recently used
        # first: a case changed again soon is encoded as stored except where it changed.
        self._remembering: OrderedDict[str, tuple[float, RememberingKey, _Opened]] = OrderedDict()

    def id_of(self, aggregate: Case) -> str:
        """The document's `_id`: the case id."""
        return aggregate.id

    async def _key(self, case_id: str) -> tuple[DataKey, _Opened] | None:
        try:
            key = await self._keys.get(case_id)
        except CaseKeyMissingError:
            self._remembering.pop(case_id, None)
            return None
        now = self._clock()
        remembered = self._remembering.pop(case_id, None)
        if remembered is None or remembered[1].key != key.key:
            # Every timeline entry's detail is sealed under one name: anew each time.
            remembered = (now, RememberingKey.of(key, fresh=frozenset({_DETAIL_FIELD})), _Opened())
        _, known, opened = remembered
        self._remembering[case_id] = (now, known, opened)
        # Her values stay in memory only while they may serve: an erased case's go at
        # once in this process (`encode`, `decode`), and in any other within the limit.
        while self._remembering and (
            len(self._remembering) > self._remember
            or next(iter(self._remembering.values()))[0] < now - self._remember_seconds
        ):
            self._remembering.popitem(last=False)
        return known, opened

    def remembers(self, case_id: str) -> bool:
        """Whether this process keeps values of the case to seal it again (never once the
        case is erased: they are personal data)."""
        return case_id in self._remembering

    async def encode(self, aggregate: Case) -> Document:
        """The case's fields (the unit of work owns `_id`, version and the outbox)."""
        if aggregate.erased:
            self._remembering.pop(aggregate.id, None)
        key, opened = (None, None)
        if not aggregate.erased:
            key, opened = await self._key(aggregate.id) or (None, None)
        doc = _to_document(aggregate, key, opened)
        return {k: v for k, v in doc.items() if k not in RESERVED_FIELDS}

    async def decode(self, doc: Document) -> Case:
        """The case a document holds, opened with its key (none asked for once erased),
        remembering its values for the change that follows."""
        erased = doc.get("status") == CaseStatus.ERASED.value
        if erased:
            self._remembering.pop(doc["_id"], None)
        key, opened = (None, None) if erased else await self._key(doc["_id"]) or (None, None)
        return _from_document(doc, key, opened)

    async def view(self, doc: Document) -> Case:
        """`decode` for reading only: nothing is remembered."""
        if doc.get("status") == CaseStatus.ERASED.value:
            return _from_document(doc, None)
        try:
            key = await self._keys.get(doc["_id"])
        except CaseKeyMissingError:
            key = None
        return _from_document(doc, key)


class MongoCaseRepository:
    """The `CaseRepository` on MongoDB (and FerretDB): the unit of work's versioned
    documents for writes, and queries served by indexes."""

    def __init__(self, documents: MongoVersionedDocuments, keys: CaseKeys) -> None:
        self._documents = documents
        self._collection: AsyncCollection[Document] = documents.collection
        self._codec = CaseCodec(keys)

    @property
    def documents(self) -> MongoVersionedDocuments:
        """The versioned documents the unit of work writes (and the relay empties)."""
        return self._documents

    @property
    def codec(self) -> CaseCodec:
        """A case to its document and back."""
        return self._codec

    async def ensure_indexes(self) -> None:
        """Unique reference; unique external_ref and idempotency key per organisation; the
        list's orders; the relay's `outbox_since`."""
        await self._collection.create_index(
            [("reference", ASCENDING)], unique=True, name="reference_unique"
        )
        await self._collection.create_index(
            [("organisation_id", ASCENDING), ("external_ref", ASCENDING)],
            unique=True,
            name="organisation_external_ref_unique",
        )
        await self._collection.create_index(
            [("organisation_id", ASCENDING), ("idempotency_key", ASCENDING)],
            unique=True,
            name="organisation_idempotency_key_unique",
        )
        await self._collection.create_index(
            [("submitted_at", DESCENDING), ("_id", DESCENDING)], name="submitted_order"
        )
        await self._collection.create_index(
            [("filing_deadline", ASCENDING), ("_id", ASCENDING)], name="deadline_order"
        )
        await self._documents.ensure_indexes()

    async def add_many(self, cases: Sequence[NewCase]) -> list[DuplicateDocumentError | None]:
        """One unordered `insert_many`: each case is stored or refused on its own
        (`MongoVersionedDocuments.insert_many`)."""
        if not cases:
            return []
        now = datetime.now(UTC)
        docs = []
        for new in cases:
            fields = await self._codec.encode(new.case)
            doc: Document = {k: v for k, v in fields.items() if v is not UNSET}
            doc["_id"] = new.case.id
            doc[VERSION_FIELD] = 1
            doc[OUTBOX_FIELD] = [e.entry() for e in new.events]
            if new.events:
                doc[OUTBOX_SINCE_FIELD] = now
            docs.append(doc)
        return await self._documents.insert_many(docs)

    async def external_ref_owners(
        self, organisation_id: str, external_refs: Sequence[str]
    ) -> dict[str, str]:
        """Read from the (organisation_id, external_ref) index."""
        found = self._collection.find(
            {"organisation_id": organisation_id, "external_ref": {"$in": list(external_refs)}},
            {"external_ref": 1},
        )
        return {d["external_ref"]: d["_id"] async for d in found}

    async def earlier_of(
        self, organisation_id: str, idempotency_keys: Sequence[str]
    ) -> dict[str, EarlierCase]:
        """One `$in` read on the unique (organisation_id, idempotency_key) index."""
        if not idempotency_keys:
            return {}
        found = self._collection.find(
            {
                "organisation_id": organisation_id,
                "idempotency_key": {"$in": list(idempotency_keys)},
            },
            {
                "idempotency_key": 1,
                "request_hash": 1,
                "reference": 1,
                "external_ref": 1,
            },
        )
        return {
            d["idempotency_key"]: EarlierCase(
                d["_id"],
                d["reference"],
                d["external_ref"],
                IdempotencyRecord(d["idempotency_key"], d.get("request_hash")),
            )
            async for d in found
        }

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None:
        """The case, or None; with `organisation_id`, only if that organisation owns it."""
        where = None if organisation_id is None else {"organisation_id": organisation_id}
        doc = await find_by_id(self._collection, case_id, where=where, projection=_NO_OUTBOX)
        if doc is None:
            return None
        return await self._codec.view(doc)

    async def page(
        self, organisation_id: str | None, filters: CaseFilters, cursor: str | None, limit: int
    ) -> CasePage:
        """One page of case summaries in `filters.sort` order, stable under concurrent
        inserts: newest first; or nearest filing deadline first, then the cases without
        one, ties by `_id`. Raises CursorError for a cursor of the other sort."""
        query: dict[str, Any] = {}
        if organisation_id is not None:
            query["organisation_id"] = organisation_id
        if filters.status:
            query["status"] = filters.status
        if filters.employment_country:
            query["employment_country"] = filters.employment_country
        if filters.claim_type:
            query["claim_types"] = filters.claim_type
        if filters.external_ref:
            query["external_ref"] = filters.external_ref
        if filters.reference:
            query["reference"] = filters.reference
        window: dict[str, Any] = {}
        if filters.submitted_from:
            window["$gte"] = filters.submitted_from
        if filters.submitted_to:
            window["$lt"] = filters.submitted_to
        if window:
            query["submitted_at"] = window
        after = None if cursor is None else CaseCursor.decode(cursor, filters.sort)
        if filters.sort is CaseSort.DEADLINE:
            docs = await self._by_deadline(query, after, limit + 1)
        else:
            docs = await self._by_submitted(query, after, limit + 1)
        items = [_summary(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            next_cursor = CaseCursor.after(filters.sort, items[-1]).encode()
        return CasePage(items=items, next_cursor=next_cursor)

    async def _find(self, query: Document, order: list[tuple[str, int]], n: int) -> list[Document]:
        found = self._collection.find(query, _SUMMARY_PROJECTION).sort(order).limit(n)
        return [d async for d in found]

    async def _by_submitted(
        self, query: Document, after: CaseCursor | None, n: int
    ) -> list[Document]:
        if after is not None:
            at = after.submitted_at
            query = {
                "$and": [
                    query,
                    {
                        "$or": [
                            {"submitted_at": {"$lt": at}},
                            {"submitted_at": at, "_id": {"$lt": after.case_id}},
                        ]
                    },
                ]
            }
        return await self._find(query, [("submitted_at", DESCENDING), ("_id", DESCENDING)], n)

    async def _by_deadline(
        self, query: Document, after: CaseCursor | None, n: int
    ) -> list[Document]:
        """Two index walks of `deadline_order`: the cases with a deadline (ascending), then
        those without (null sorts first in MongoDB, so it cannot simply come last)."""
        docs: list[Document] = []
        if after is None or after.key is not None:
            dated: Document = {"filing_deadline": {"$type": "string"}}
            if after is not None:
                dated = {
                    "$or": [
                        {"filing_deadline": {"$gt": after.key}},
                        {"filing_deadline": after.key, "_id": {"$gt": after.case_id}},
                    ]
                }
            order = [("filing_deadline", ASCENDING), ("_id", ASCENDING)]
            docs = await self._find({"$and": [query, dated]}, order, n)
        if len(docs) < n:
            undated: Document = {"filing_deadline": None}
            if after is not None and after.key is None:
                undated = {"filing_deadline": None, "_id": {"$gt": after.case_id}}
            order = [("filing_deadline", ASCENDING), ("_id", ASCENDING)]
            docs += await self._find({"$and": [query, undated]}, order, n - len(docs))
        return docs

    async def facts(
        self, organisation_id: str | None, start: datetime | None, end: datetime | None
    ) -> list[CaseFacts]:
        """The non-personal facts of the cases submitted in [start, end), for indicators."""
        query: dict[str, Any] = {}
        if organisation_id is not None:
            query["organisation_id"] = organisation_id
        window: dict[str, Any] = {}
        if start is not None:
            window["$gte"] = start
        if end is not None:
            window["$lt"] = end
        if window:
            query["submitted_at"] = window
        projection = {
            "organisation_id": 1,
            "status": 1,
            "employment_country": 1,
            "claim_types": 1,
            "worker_facts": 1,
            "submitted_at": 1,
            "outcome": 1,
            "timeline": 1,
        }
        return [
            CaseFacts(
                organisation_id=d["organisation_id"],
                status=d["status"],
                employment_country=d.get("employment_country"),
                claim_types=tuple(d.get("claim_types", ())),
                submitted_at=d["submitted_at"],
                outcome=(d.get("outcome") or {}).get("outcome"),
                amounts_recovered=_amounts(d.get("outcome") or {}),
                timeline=tuple((t["type"], t["at"], t["summary"]) for t in d.get("timeline", [])),
                **{
                    name: (d.get("worker_facts") or {}).get(name) or UNKNOWN
                    for name in ("gender", "age_band", "disability", "sector", "home_province")
                },
            )
            async for d in self._collection.find(query, projection)
        ]

    async def raw(self, case_id: str) -> Document | None:
        """The stored document as it is (operators and tests)."""
        return await self._collection.find_one({"_id": case_id})
