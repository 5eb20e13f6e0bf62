"""Intake's use cases: cases from submission to erasure, and news from other services.

Every change goes through one `UnitOfWork[Case]` (lintas_shared.unit_of_work): it reads
the case, the pure domain decides (scoped to the caller's organisation), and one
conditional single-document update, guarded by the version it read, writes the new
state with its events (the outbox the relay publishes); a lost race reads and decides
again. News from referral and notify is applied once per event: the unit of work records
its (source, id) key in the same update and skips it when it comes again.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Protocol

from lintas_shared import events as ev
from lintas_shared.consumer import PermanentEventError
from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.ids import deterministic_id, new_case_reference, new_id
from lintas_shared.topics import CASES
from lintas_shared.unit_of_work import (
    Decide,
    Decision,
    DocumentCodec,
    DocumentNotFoundError,
    DuplicateDocumentError,
    OnCommit,
    Outgoing,
    PublishedFront,
    UnitOfWork,
    VersionedDocuments,
)
from lintas_shared.values import Money

from lintas_intake.domain.case import Case, CaseStateError, CaseStatus, ReferralSummary
from lintas_intake.domain.records import (
    ConsentRecord,
    DocumentRecord,
    Note,
    Outcome,
    TimelineEntry,
)
from lintas_intake.domain.submission import CaseSubmission, Consent

SOURCE = "/lintas/intake"
#: Where a preference the worker texted comes from (notify answers her SMS).
NOTIFY_SOURCE = "/lintas/notify"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock, at the store's precision (BSON dates hold milliseconds), so that
    what a response says and what a later read says are the same instant."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# --- errors the API turns into answers --------------------------------------------------


class CaseNotFoundError(Exception):
    """No such case for this organisation (HTTP 404, whether it exists elsewhere or not)."""


class VersionMismatchError(Exception):
    """If-Match named a version that is no longer current (HTTP 412)."""

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the case is at version {current_version}")
        self.current_version = current_version


class DuplicateExternalRefError(Exception):
    """The NGO already submitted a case with this external_ref."""

    def __init__(self, existing_case_id: str) -> None:
        super().__init__(f"external_ref already used by case {existing_case_id}")
        self.existing_case_id = existing_case_id


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body (HTTP 409)."""


# --- ports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyRecord:
    """The key a create was made under, and a hash of its request body (None once the
    case is erased: nothing derived from the body outlives the case)."""

    key: str
    request_hash: str | None


class CaseSort(StrEnum):
    """The order of the case list."""

    #: Newest first (submitted_at, then _id, both descending).
    SUBMITTED = "submitted"
    #: Nearest filing deadline first, then those without one; ties by _id ascending.
    DEADLINE = "deadline"


@dataclass(frozen=True)
class CaseFilters:
    """Filters (and the order) of the case list."""

    status: str | None = None
    employment_country: str | None = None
    claim_type: str | None = None
    external_ref: str | None = None
    reference: str | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    sort: CaseSort = CaseSort.SUBMITTED


@dataclass(frozen=True)
class CaseSummary:
    """A case in a list: no personal data."""

    id: str
    reference: str
    external_ref: str
    status: CaseStatus
    submitted_at: datetime
    updated_at: datetime
    employment_country: str | None
    claim_types: tuple[str, ...]
    #: The current referral's filing deadline, and whether a lawyer verified it.
    deadline: date | None = None
    deadline_verified: bool | None = None


@dataclass(frozen=True)
class CasePage:
    """One page of a list, and the cursor of the next one."""

    items: list[CaseSummary]
    next_cursor: str | None


class CursorError(ValueError):
    """A cursor that is not ours, or that pages the other sort (HTTP 422 on `cursor`)."""


@dataclass(frozen=True)
class CaseCursor:
    """Where a page ended: its sort, the sort key of its last case, and that case's id.

    The key is `submitted_at` (ISO date-time) for `submitted`, and the filing deadline
    (ISO date, as stored) or None for `deadline`. Opaque to clients.
    """

    sort: CaseSort
    key: str | None
    case_id: str

    @classmethod
    def after(cls, sort: CaseSort, last: CaseSummary) -> CaseCursor:
        if sort is CaseSort.DEADLINE:
            key = None if last.deadline is None else last.deadline.isoformat()
        else:
            key = last.submitted_at.isoformat()
        return cls(sort, key, last.id)

    def encode(self) -> str:
        raw = json.dumps([self.sort.value, self.key, self.case_id]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @classmethod
    def decode(cls, cursor: str, sort: CaseSort) -> CaseCursor:
        """Read a cursor back for `sort`; CursorError if it is not one of ours or of `sort`."""
        try:
            parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if len(parts) == 2:  # before sorts: [submitted_at, id]
                parts = [CaseSort.SUBMITTED.value, *parts]
            given, key, case_id = CaseSort(parts[0]), parts[1], str(parts[2])
            if given is CaseSort.SUBMITTED:
                datetime.fromisoformat(key)
            elif key is not None:
                date.fromisoformat(key)
        except Exception as exc:
            raise CursorError("invalid cursor") from exc
        if given is not sort:
            raise CursorError(f"the cursor pages sort={given.value}, not sort={sort.value}")
        return cls(given, key, case_id)

    @property
    def submitted_at(self) -> datetime:
        assert self.key is not None
        return datetime.fromisoformat(self.key)


class CaseKeys(Protocol):
    """The key vault, as intake uses it."""

    async def fresh(self, count: int) -> list[DataKey]:
        """`count` new cases' keys, already in the vault, each under a new case id."""
        ...

    def give_back(self, keys: Iterable[DataKey]) -> None:
        """Keys from `fresh` no case was stored under (the cases were refused)."""
        ...

    async def get(self, case_id: str) -> DataKey: ...

    async def destroy(self, case_id: str) -> bool: ...


@dataclass(frozen=True)
class EarlierCase:
    """What a create under an Idempotency-Key needs of the case an earlier one made."""

    id: str
    reference: str
    external_ref: str
    idempotency: IdempotencyRecord


@dataclass(frozen=True)
class NewCase:
    """A case to insert, with the events its insert publishes."""

    case: Case
    events: Sequence[Outgoing]


class CaseRepository(Protocol):
    """Where cases live: the versioned documents the unit of work writes (one document
    per case, holding its events and its processed event keys), the codec between a
    `Case` and its document, and the queries that are not a change."""

    @property
    def documents(self) -> VersionedDocuments:
        """The store the unit of work reads and writes."""
        ...

    @property
    def codec(self) -> DocumentCodec[Case]:
        """A case to its document (personal fields sealed) and back."""
        ...

    async def add_many(self, cases: Sequence[NewCase]) -> list[DuplicateDocumentError | None]:
        """Insert new cases at once, each on its own: per case, None (stored) or the
        refusal (`by_id`: a case has its id; else its reference or external_ref is
        taken; the store does not say which)."""
        ...

    async def external_ref_owners(
        self, organisation_id: str, external_refs: Sequence[str]
    ) -> dict[str, str]:
        """The cases of an organisation holding these external_refs (ref -> case id)."""
        ...

    async def earlier_of(
        self, organisation_id: str, idempotency_keys: Sequence[str]
    ) -> dict[str, EarlierCase]:
        """The organisation's cases made under these Idempotency-Keys, by key (one read
        for a whole batch)."""
        ...

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None: ...

    async def page(
        self, organisation_id: str | None, filters: CaseFilters, cursor: str | None, limit: int
    ) -> CasePage: ...


# --- events intake publishes ------------------------------------------------------------


def initial_consent_id(case_id: str) -> str:
    """The id of the consent record that came with the submission."""
    return deterministic_id("consent", case_id, "1")


def request_hash(body: Any) -> str:
    """A stable hash of a JSON request body."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _consent_summary(record: ConsentRecord) -> ev.ConsentSummary:
    consent = record.consent
    assert consent is not None
    return ev.ConsentSummary(
        consent_id=record.id,
        purposes=consent.purposes,
        share_with_countries=consent.share_with_countries,
        share_with_organisations=consent.share_with_organisations,
        given_at=consent.given_at,
    )


def _sealed_parts(
    sub: CaseSubmission, key: DataKey
) -> tuple[ev.WorkerInfo, ev.EmploymentSummary, tuple[ev.ClaimSummary, ...]]:
    def seal(field: str, value: str | None) -> str | None:
        return None if value is None else key.encrypt(field, value)

    worker = ev.WorkerInfo(
        full_name=key.encrypt("worker.full_name", sub.worker.full_name),
        phone=key.encrypt("worker.phone", sub.worker.phone),
        # Keyed by the case's own key (issue #15): no global phone hash travels in an
        # event, and this one is noise once the case is erased. Notify, the only reader
        # of phones, keeps its own look-up hash, and drops it at erasure.
        phone_hash=key.keyed_hash("worker.phone", sub.worker.phone),
        preferred_language=sub.worker.preferred_language,
        current_country=sub.worker.current_country,
    )
    employment = ev.EmploymentSummary(
        country=sub.employment.country,
        sector=sub.employment.sector,
        started_on=sub.employment.started_on,
        ended_on=sub.employment.ended_on,
        employer_name=seal("employment.employer_name", sub.employment.employer_name),
        placement_agency=seal("employment.placement_agency", sub.employment.placement_agency),
        placement_agency_country=sub.employment.placement_agency_country,
    )
    claims = tuple(
        ev.ClaimSummary(
            type=c.type,
            amount=c.amount,
            arose_on=c.arose_on,
            claimants=c.claimants,
            description=seal(f"claims[{i}].description", c.description),
        )
        for i, c in enumerate(sub.claims)
    )
    return worker, employment, claims


def case_submitted_event(case: Case, key: DataKey) -> CloudEvent:
    """What routing and notify need, every personal field sealed with the case's key.

    Dates of birth, home regions and identity numbers stay in intake altogether.
    """
    assert case.submission is not None
    worker, employment, claims = _sealed_parts(case.submission, key)
    payload = ev.CaseSubmitted(
        case_id=case.id,
        reference=case.reference,
        organisation_id=case.organisation_id,
        submitted_at=case.submitted_at,
        worker=worker,
        employment=employment,
        claims=claims,
        consent=_consent_summary(case.consents[0]),
    )
    return ev.make_event(payload, source=SOURCE, subject=case.id)


def _event(payload: ev.EventPayload, case_id: str) -> CloudEvent:
    return ev.make_event(payload, source=SOURCE, subject=case_id)


def _entry(
    at: datetime, type_: str, actor: str, summary: str, person_id: str | None
) -> TimelineEntry:
    return TimelineEntry(
        at=at, source="intake", type=type_, actor=actor, summary=summary, person_id=person_id
    )


# --- the use cases ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewSubmission:
    """One case of a batch: the submission, its Idempotency-Key and its body's hash."""

    submission: CaseSubmission
    idempotency_key: str
    body_hash: str


@dataclass(frozen=True)
class Submitted:
    """What became of one case of a batch: created now, or an earlier request's case."""

    id: str
    reference: str
    external_ref: str
    created: bool


#: Draws of a case reference before giving up (they collide now and then).
REFERENCE_DRAWS = 10


class CaseService:
    """Everything an NGO (or an admin) does with cases."""

    def __init__(
        self,
        cases: CaseRepository,
        keys: CaseKeys,
        clock: Clock = utc_now,
        on_commit: OnCommit | None = None,
        published: PublishedFront | None = None,
    ) -> None:
        """`on_commit` and `published`: the outbox relay's hooks (see `UnitOfWork`). With
        `published`, the first news of a case (referral's offer, within a second of the
        submission) also removes its published `case submitted` entry from the outbox,
        so the relay's own removal of it, one more write of the case, is not needed."""
        self.cases = cases
        self.keys = keys
        self.clock = clock
        self._on_commit = on_commit
        self.work: UnitOfWork[Case] = UnitOfWork(
            cases.documents, cases.codec, on_commit=on_commit, published=published
        )

    def _new_case(
        self,
        case_id: str,
        submission: CaseSubmission,
        organisation_id: str,
        idempotency: IdempotencyRecord,
        person_id: str | None,
    ) -> Case:
        now = self.clock()
        consent = ConsentRecord(
            id=initial_consent_id(case_id),
            consent=submission.consent,
            recorded_at=now,
            recorded_by=organisation_id,
        )
        return Case(
            id=case_id,
            reference=new_case_reference(),
            organisation_id=organisation_id,
            external_ref=submission.external_ref,
            submission=submission,
            submitted_at=now,
            updated_at=now,
            consents=(consent,),
            timeline=(
                _entry(now, ev.CaseSubmitted.TYPE, organisation_id, "case submitted", person_id),
            ),
            idempotency_key=idempotency.key,
            request_hash=idempotency.request_hash,
        )

    async def submit(
        self,
        submission: CaseSubmission,
        organisation_id: str,
        idempotency_key: str | None,
        body_hash: str,
        person_id: str | None = None,
    ) -> tuple[Case, bool]:
        """Store a new case and its `case submitted` event in one insert.

        Returns the case and whether it was created now (False: an earlier request with
        the same Idempotency-Key and body created it, and nothing happens again). The
        case takes a new id whose key is already in the vault; the unique index on
        (organisation, Idempotency-Key) refuses a retry's insert (concurrent retries
        too) instead of creating two cases. The insert comes first and only a refused
        one reads the earlier case: a retry is rare, a first request is not.
        """
        [key] = await self.keys.fresh(1)
        case_id = key.case_id
        idempotency = IdempotencyRecord(idempotency_key or f"auto:{case_id}", body_hash)
        for attempt in range(REFERENCE_DRAWS):
            case = self._new_case(case_id, submission, organisation_id, idempotency, person_id)
            try:
                await self.work.add(case, [Outgoing(CASES, case_submitted_event(case, key))])
            except DuplicateDocumentError as exc:
                if exc.by_id:
                    # The id is new and random: the store holds this very insert (a
                    # batch that failed as a whole is tried again item by item). The
                    # case is this request's, and so is its key, for good.
                    stored = await self.cases.get(case_id, organisation_id)
                    if stored is None:
                        raise
                    return stored, True
                # A unique key refused. An earlier request's Idempotency-Key is answered
                # with its case; else the first refusal is taken for a reference
                # collision and redrawn, and a reused external_ref, refused again, is
                # looked for (an index read).
                if idempotency_key is not None:
                    earlier = await self.cases.earlier_of(organisation_id, [idempotency_key])
                    if idempotency_key in earlier:
                        self._unused(key, earlier[idempotency_key].id)
                        retried = await self._retried(
                            earlier[idempotency_key], organisation_id, body_hash
                        )
                        return retried, False
                if attempt > 0:
                    owners = await self.cases.external_ref_owners(
                        organisation_id, [case.external_ref]
                    )
                    if case.external_ref in owners:
                        self._unused(key)
                        raise DuplicateExternalRefError(owners[case.external_ref]) from None
                continue
            return case, True
        self._unused(key)
        raise RuntimeError("could not draw a free case reference")

    def _unused(self, key: DataKey, *case_ids: str) -> None:
        """A key from `fresh` whose case every insert refused goes back, unless one of
        `case_ids` (cases found after a refusal) is its own: only a definite refusal
        frees a key; any other failure keeps it, as its case may have been stored."""
        if key.case_id not in case_ids:
            self.keys.give_back([key])

    async def submit_many(
        self,
        items: Sequence[NewSubmission],
        organisation_id: str,
        person_id: str | None = None,
    ) -> list[Submitted | Exception]:
        """Decide every case of a batch as `submit` would with its own key, cheaply: one
        read finds the cases earlier requests made, the new ones are inserted together
        (each accepted or refused on its own), and only the refused ones are looked at
        again. Per item: `Submitted`, or the error `submit` would raise
        (DuplicateExternalRefError, IdempotencyConflictError)."""
        results: dict[int, Submitted | Exception] = {}
        found = await self.cases.earlier_of(
            organisation_id, sorted({i.idempotency_key for i in items})
        )
        pending = []
        for index, item in enumerate(items):
            earlier = found.get(item.idempotency_key)
            if earlier is not None:
                results[index] = _replayed(earlier, item.body_hash)
            else:
                pending.append(index)
        keys = dict(zip(pending, await self.keys.fresh(len(pending)), strict=True))
        stored_ids: set[str] = set()
        for attempt in range(REFERENCE_DRAWS):
            if not pending:
                break
            # One insert per Idempotency-Key a round: a key repeated in the batch is an
            # earlier request's case by the next round.
            now_keys: set[str] = set()
            this_round: list[int] = []
            later: list[int] = []
            for index in pending:
                idempotency_key = items[index].idempotency_key
                (later if idempotency_key in now_keys else this_round).append(index)
                now_keys.add(idempotency_key)
            new = {
                index: self._new_case(
                    keys[index].case_id,
                    items[index].submission,
                    organisation_id,
                    IdempotencyRecord(items[index].idempotency_key, items[index].body_hash),
                    person_id,
                )
                for index in this_round
            }
            events = {
                index: [Outgoing(CASES, case_submitted_event(case, keys[index]))]
                for index, case in new.items()
            }
            refusals = await self.cases.add_many(
                [NewCase(new[index], events[index]) for index in this_round]
            )
            refused: list[int] = []
            for index, refusal in zip(this_round, refusals, strict=True):
                case = new[index]
                if refusal is None:
                    results[index] = Submitted(case.id, case.reference, case.external_ref, True)
                    if self._on_commit is not None:
                        self._on_commit(case.id, 1, [e.entry() for e in events[index]])
                else:
                    refused.append(index)
                    if refusal.by_id:  # its new random id: the store holds this insert
                        stored_ids.add(case.id)
            # As `submit`: an earlier request's key, else a unique key taken (the second
            # refusal looks for the external_ref).
            earlier_cases = await self.cases.earlier_of(
                organisation_id, sorted({items[i].idempotency_key for i in refused})
            )
            taken: list[int] = []
            for index in refused:
                earlier = earlier_cases.get(items[index].idempotency_key)
                if earlier is None:
                    taken.append(index)
                else:
                    results[index] = _replayed(earlier, items[index].body_hash)
            if taken and attempt > 0:
                owners = await self.cases.external_ref_owners(
                    organisation_id, sorted({new[i].external_ref for i in taken})
                )
                for index in taken:
                    owner = owners.get(new[index].external_ref)
                    if owner is not None:
                        results[index] = DuplicateExternalRefError(owner)
            pending = [i for i in [*taken, *later] if i not in results]
        for index in pending:
            results[index] = RuntimeError("could not draw a free case reference")
        # The keys of cases every insert refused: no case holds them.
        answered = {r.id for r in results.values() if isinstance(r, Submitted)}
        for index, key in keys.items():
            if not _created(results[index]):
                self._unused(key, *answered, *stored_ids)
        return [results[index] for index in range(len(items))]

    async def _retried(self, earlier: EarlierCase, organisation_id: str, body_hash: str) -> Case:
        """The case an earlier request with this Idempotency-Key created."""
        _check_same_body(earlier.idempotency, body_hash)
        case = await self.cases.get(earlier.id, organisation_id)
        if case is None:
            raise CaseNotFoundError(earlier.id)
        return case

    async def get(self, case_id: str, organisation_id: str | None) -> Case:
        """One case, scoped to the organisation (None: any, for admins)."""
        case = await self.cases.get(case_id, organisation_id)
        if case is None:
            raise CaseNotFoundError(case_id)
        return case

    async def _change(
        self,
        case_id: str,
        organisation_id: str | None,
        expected_version: int | None,
        change: Callable[[Case, datetime], Awaitable[tuple[Case, list[CloudEvent]]]]
        | Callable[[Case, datetime], tuple[Case, list[CloudEvent]]],
    ) -> Case:
        """One change through the unit of work. Another organisation's case is not found
        before anything else is said about it; then If-Match (`expected_version`) must
        name the version the change is decided on (checked inside the decision, after the
        scope, so a wrong version never tells another organisation the case exists)."""

        async def decide(case: Case) -> Decision[Case]:
            if organisation_id is not None and case.organisation_id != organisation_id:
                raise CaseNotFoundError(case_id)
            if expected_version is not None and case.version != expected_version:
                raise VersionMismatchError(case.version)
            changed = change(case, self.clock())
            updated, events = await changed if inspect.isawaitable(changed) else changed
            return Decision(updated, [Outgoing(CASES, e) for e in events])

        try:
            committed = await self.work.change(case_id, decide)
        except DocumentNotFoundError:
            raise CaseNotFoundError(case_id) from None
        return committed.aggregate

    async def correct(
        self,
        case_id: str,
        organisation_id: str,
        expected_version: int,
        patch: dict[str, Any],
        actor: str,
        person_id: str | None = None,
    ) -> Case:
        """Apply a JSON merge patch to worker, employment and claims (If-Match required)."""

        async def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            if case.submission is None:
                raise CaseStateError("the case is erased")
            try:
                key = await self.keys.get(case_id)
            except CaseKeyMissingError as exc:
                raise CaseStateError("the case is erased") from exc
            merged = _merge(case.submission.model_dump(mode="json"), patch)
            corrected = CaseSubmission.model_validate(merged)
            updated = case.correct(
                corrected,
                _entry(
                    now,
                    ev.CaseDetailsCorrected.TYPE,
                    actor,
                    f"corrected: {', '.join(sorted(patch))}",
                    person_id,
                ),
            )
            worker, employment, claims = _sealed_parts(corrected, key)
            payload = ev.CaseDetailsCorrected(
                case_id=case_id,
                corrected_at=now,
                worker=worker if "worker" in patch else None,
                employment=employment if "employment" in patch else None,
                claims=claims if "claims" in patch else None,
            )
            return updated, [_event(payload, case_id)]

        return await self._change(case_id, organisation_id, expected_version, change)

    async def add_consent(
        self,
        case_id: str,
        organisation_id: str,
        consent: Consent,
        actor: str,
        person_id: str | None = None,
    ) -> tuple[Case, ConsentRecord]:
        """Record another consent; routing may resume."""
        record_id = new_id()

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            record = ConsentRecord(
                id=record_id, consent=consent, recorded_at=now, recorded_by=actor
            )
            updated = case.add_consent(
                record, _entry(now, ev.ConsentRecorded.TYPE, actor, "consent recorded", person_id)
            )
            payload = ev.ConsentRecorded(case_id=case_id, consent=_consent_summary(record))
            return updated, [_event(payload, case_id)]

        case = await self._change(case_id, organisation_id, None, change)
        record = case.consent(record_id)
        assert record is not None
        return case, record

    async def withdraw_consent(
        self,
        case_id: str,
        organisation_id: str,
        consent_id: str,
        actor: str,
        person_id: str | None = None,
    ) -> Case:
        """Withdraw a consent; referrals it allowed are withdrawn by routing."""

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            if case.consent(consent_id) is None:
                raise CaseNotFoundError(consent_id)
            entry = _entry(now, ev.ConsentWithdrawn.TYPE, actor, "consent withdrawn", person_id)
            updated = case.withdraw_consent(consent_id, now, entry)
            payload = ev.ConsentWithdrawn(case_id=case_id, consent_id=consent_id, withdrawn_at=now)
            return updated, [_event(payload, case_id)]

        return await self._change(case_id, organisation_id, None, change)

    async def add_note(
        self,
        case_id: str,
        organisation_id: str,
        text: str,
        actor: str,
        person_id: str | None = None,
    ) -> tuple[Case, Note]:
        """Add an internal note."""
        note_id = new_id()

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            note = Note(id=note_id, text=text, author_organisation_id=actor, at=now)
            entry = _entry(now, "case.note_added", actor, "note added", person_id)
            return case.add_note(note, entry), []

        case = await self._change(case_id, organisation_id, None, change)
        return case, next(n for n in case.notes if n.id == note_id)

    async def add_document(
        self,
        case_id: str,
        organisation_id: str,
        document: Callable[[str, datetime], DocumentRecord],
        actor: str,
        person_id: str | None = None,
    ) -> tuple[Case, DocumentRecord]:
        """Record a document's metadata."""
        document_id = new_id()

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            record = document(document_id, now)
            summary = f"document recorded: {record.kind}"
            entry = _entry(now, "case.document_recorded", actor, summary, person_id)
            return case.add_document(record, entry), []

        case = await self._change(case_id, organisation_id, None, change)
        return case, next(d for d in case.documents if d.id == document_id)

    async def set_sms_preference(
        self,
        case_id: str,
        organisation_id: str,
        opted_out: bool,
        actor: str,
        person_id: str | None = None,
    ) -> Case:
        """Opt the worker out of SMS (or back in) on her behalf."""

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            if case.submission is None:
                raise CaseStateError("the case is erased")
            word = "out of" if opted_out else "back into"
            updated = case.set_sms_opt_out(
                opted_out,
                _entry(
                    now, ev.SmsPreferenceChanged.TYPE, actor, f"worker opted {word} SMS", person_id
                ),
            )
            # Notify finds the phone by the case id (issue #15): no phone hash.
            payload = ev.SmsPreferenceChanged(
                case_id=case_id,
                opted_out=opted_out,
                channel="api",
                changed_at=now,
            )
            return updated, [_event(payload, case_id)]

        return await self._change(case_id, organisation_id, None, change)

    async def close(
        self,
        case_id: str,
        organisation_id: str,
        outcome: str,
        amounts: Sequence[Money],
        actor: str,
        person_id: str | None = None,
    ) -> Case:
        """Close the case with an outcome and the amounts recovered."""

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            result = Outcome(
                outcome=outcome,
                closed_at=now,
                closed_by=actor,
                amounts_recovered=tuple((m.currency, m.value) for m in amounts),
            )
            updated = case.close(
                result,
                _entry(now, ev.CaseClosed.TYPE, actor, f"case closed: {outcome}", person_id),
            )
            payload = ev.CaseClosed(
                case_id=case_id,
                outcome=outcome,
                amounts_recovered=tuple(amounts),
                closed_at=now,
            )
            return updated, [_event(payload, case_id)]

        return await self._change(case_id, organisation_id, None, change)

    async def erase(
        self, case_id: str, organisation_id: str | None, actor: str, person_id: str | None = None
    ) -> Case:
        """Erase the worker's data everywhere: drop it here, destroy the case key, announce.

        Destroying the key is what reaches every other copy, including records already in
        Kafka: they were sealed with it. The key is destroyed after the erased document
        (with its `case erased` event) is written, so a crash in between leaves a retry
        that completes it.
        """

        def change(case: Case, now: datetime) -> tuple[Case, list[CloudEvent]]:
            entry = _entry(now, ev.CaseErased.TYPE, actor, "personal data erased", person_id)
            updated = case.erase(entry)
            return updated, [_event(ev.CaseErased(case_id=case_id, erased_at=now), case_id)]

        try:
            case = await self._change(case_id, organisation_id, None, change)
        except CaseStateError:
            case = await self.get(case_id, organisation_id)  # already erased: finish the job
        await self.keys.destroy(case_id)
        return case

    async def list_cases(
        self, organisation_id: str | None, filters: CaseFilters, cursor: str | None, limit: int
    ) -> CasePage:
        """A page of case summaries."""
        return await self.cases.page(organisation_id, filters, cursor, limit)

    # --- news from referral and notify ------------------------------------------------

    async def apply_news(self, event: CloudEvent) -> None:
        """Apply one event from referral or notify to its case, exactly once."""
        await self.apply_news_together([event])

    async def apply_news_together(self, events: Sequence[CloudEvent]) -> None:
        """Apply events from referral and notify about one case, in order, each exactly
        once, in one write of the case (a consumer's batch often holds both news of a new
        case: its referral offered and its first SMS sent)."""
        steps: list[tuple[Decide[Case], str]] = []
        case_ids = set()
        for event in events:
            payload_type = ev.EVENT_TYPES.get(event.type)
            if payload_type is None:
                continue
            payload = ev.parse_payload(event, payload_type)
            case_ids.add(str(getattr(payload, "case_id", event.subject)))
            steps.append((self._news_decision(event, payload), event.dedupe_key))
        if not steps:
            return
        if len(case_ids) > 1:
            raise ValueError("news of more than one case cannot be applied together")
        case_id = case_ids.pop()
        try:
            await self.work.change_each(case_id, steps)
        except DocumentNotFoundError:
            raise PermanentEventError(f"no case {case_id}") from None

    def _news_decision(self, event: CloudEvent, payload: ev.EventPayload) -> Decide[Case]:
        async def decide(case: Case) -> Decision[Case]:
            words = await _open_partner_words(self.keys, payload, case.id)
            entry = _news_entry(event, payload, case, words)
            return Decision(case.record_news(entry, **_status_change(payload, case)))

        return decide

    async def apply_sms_preference(self, event: CloudEvent) -> None:
        """She texted STOP or START to notify: show it on the case, once.

        Only notify's announcements are applied (`sms preference texted` on its topic,
        or, from before that event, `sms preference changed` on intake's): intake's own
        come back on its topic and are skipped. Applying one announces nothing, so a
        change never echoes between intake and notify; the latest change stands.
        """
        if event.source != NOTIFY_SOURCE:
            return
        await self.apply_news(event)


def _check_same_body(record: IdempotencyRecord, body_hash: str) -> None:
    if record.request_hash is not None and record.request_hash != body_hash:
        raise IdempotencyConflictError(
            "this Idempotency-Key was used with a different request body"
        )


def _created(result: Submitted | Exception) -> bool:
    return isinstance(result, Submitted) and result.created


def _replayed(earlier: EarlierCase, body_hash: str) -> Submitted | Exception:
    """An earlier request's case as a batch item's answer (or its conflict)."""
    try:
        _check_same_body(earlier.idempotency, body_hash)
    except IdempotencyConflictError as exc:
        return exc
    return Submitted(earlier.id, earlier.reference, earlier.external_ref, False)


async def _open_partner_words(keys: CaseKeys, payload: ev.EventPayload, case_id: str) -> str | None:
    """A decline's reason, sealed by referral with the case's key; None once it is gone."""
    note = getattr(payload, "note", None)
    if not isinstance(payload, ev.ReferralDeclined) or note is None:
        return None
    try:
        return (await keys.get(case_id)).decrypt(ev.PARTNER_NOTE_FIELD, note)
    except (CaseKeyMissingError, ValueError):
        return None


def _news_entry(
    event: CloudEvent, payload: ev.EventPayload, case: Case, partner_words: str | None = None
) -> TimelineEntry:
    """The timeline entry of news from referral or notify. `partner_words`: a partner's
    own (a decline's reason), opened with the case's key; the store seals them again."""
    at = event.time
    if isinstance(payload, ev.SmsPreference):
        word = "out of" if payload.opted_out else "back into"
        summary = f"worker opted {word} SMS by text message"
        if not case.is_newer_sms_preference(payload.changed_at):
            summary += " (a later change stands)"
        return TimelineEntry(
            at=at, source="notify", type=event.type, actor="notify", summary=summary
        )
    source = "notify" if payload.TOPIC == ev.SmsSent.TOPIC else "referral"
    actor = str(getattr(payload, "partner_organisation_id", None) or source)
    words = event.type.rsplit(".", 1)[-1].replace("_", " ")
    detail = partner_words or getattr(payload, "reason", None) or getattr(payload, "template", None)
    summary = f"{words}: {detail}" if detail else words
    return TimelineEntry(
        at=at,
        source=source,
        type=event.type,
        actor=actor,
        summary=summary,
        person_id=getattr(payload, "by_person_id", None),
    )


def _status_change(payload: ev.EventPayload, case: Case) -> dict[str, Any]:
    """How routing news moves the case status the NGO sees (and a texted preference
    its SMS setting, when it is the latest change)."""
    if isinstance(payload, ev.SmsPreference):
        if not case.is_newer_sms_preference(payload.changed_at):
            return {}
        return {
            "sms_opted_out": payload.opted_out,
            "sms_preference_at": payload.changed_at,
            "sms_preference_channel": payload.channel,
        }
    if isinstance(payload, ev.ReferralOffered):
        return {
            "status": CaseStatus.REFERRED,
            "referral": ReferralSummary(
                referral_id=payload.referral_id,
                partner_organisation_id=payload.partner_organisation_id,
                country=payload.country,
                offered_at=payload.offered_at,
                forum_code=payload.forum.code if payload.forum else None,
                forum_name=payload.forum.name if payload.forum else None,
                deadline=payload.deadline.date.isoformat() if payload.deadline else None,
                deadline_verified=payload.deadline.verified if payload.deadline else None,
            ),
        }
    if isinstance(payload, ev.CaseRoutingBlocked):
        return {"status": CaseStatus(payload.status), "reason": payload.reason}
    current = case.referral
    same = current is not None and current.referral_id == getattr(payload, "referral_id", None)
    if isinstance(payload, ev.ReferralAccepted) and same and current:
        return {"status": CaseStatus.ACCEPTED, "referral": _with_status(current, "accepted")}
    if isinstance(payload, ev.ReferralProgressed) and same and current:
        return {"status": CaseStatus.IN_PROGRESS, "referral": _with_status(current, "in_progress")}
    if isinstance(payload, ev.ReferralClosed) and same and current:
        return {
            "status": CaseStatus.CLOSED,
            "referral": _with_status(current, "closed"),
            "outcome": Outcome(
                outcome=payload.outcome,
                closed_at=payload.at,
                closed_by=payload.partner_organisation_id,
                amounts_recovered=tuple((m.currency, m.value) for m in payload.amounts_recovered),
            ),
        }
    if (
        isinstance(payload, ev.ReferralDeclined | ev.ReferralExpired | ev.ReferralWithdrawn)
        and same
        and current
    ):
        # Routing follows with a new offer or a blocked routing; until then, say so.
        return {"referral": _with_status(current, payload.TYPE.rsplit(".", 1)[-1])}
    return {}


def _with_status(referral: ReferralSummary, status: str) -> ReferralSummary:
    from dataclasses import replace

    return replace(referral, status=status)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
