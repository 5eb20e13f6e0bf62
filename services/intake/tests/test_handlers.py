"""Intake's use cases against an in-memory repository and key vault."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import lintas_intake.adapters.case_repository as repository_module
import lintas_intake.handlers as handlers_module
import pytest
from lintas_intake.adapters.case_keys import CachedCaseKeys
from lintas_intake.adapters.case_repository import CaseCodec, _from_document
from lintas_intake.domain.case import Case, CaseStateError, CaseStatus
from lintas_intake.domain.submission import CaseSubmission, Consent
from lintas_intake.handlers import (
    CaseCursor,
    CaseFilters,
    CaseNotFoundError,
    CasePage,
    CaseService,
    CaseSort,
    CaseSummary,
    CursorError,
    DuplicateExternalRefError,
    EarlierCase,
    IdempotencyConflictError,
    IdempotencyRecord,
    NewCase,
    NewSubmission,
    Submitted,
    VersionMismatchError,
)
from lintas_shared import events as ev
from lintas_shared.consumer import PermanentEventError
from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document
from lintas_shared.outbox import entry_event
from lintas_shared.unit_of_work import (
    UNSET,
    DuplicateDocumentError,
    InMemoryVersionedDocuments,
    Write,
)
from lintas_shared.values import Money

from tests.support.fixtures import EXAMPLE_CASE, FakeKeyVault, example_case

pytestmark = pytest.mark.unit


class InMemoryCases:
    """The repository on the in-memory store, with the real codec (sealing with the
    fake vault's keys): the unit of work's promises are the store's, as in MongoDB."""

    def __init__(self, keys: FakeKeyVault) -> None:
        self.keys = keys
        self.documents = InMemoryVersionedDocuments(
            "cases",
            unique=[
                ("reference",),
                ("organisation_id", "external_ref"),
                ("organisation_id", "idempotency_key"),
            ],
        )
        self.codec = CaseCodec(keys)
        #: What the relay was handed, in commit order.
        self.outbox: list[CloudEvent] = []
        #: Documents of cases outside this fake (holding a reference, say).
        self.elsewhere: set[str] = set()
        #: How often the external_ref was looked for (an index read in Mongo).
        self.external_ref_lookups = 0
        self.add_many_calls = 0

    def committed(self, doc_id: str, version: int, entries: list[Document]) -> None:
        """The relay's hook: record the entries not seen yet."""
        seen = {e.id for e in self.outbox}
        self.outbox.extend(entry_event(e) for e in entries if e["id"] not in seen)

    def hold_reference(self, reference: str) -> None:
        """A case of another organisation holds this reference."""
        doc_id = f"elsewhere-{reference}"
        self.elsewhere.add(doc_id)
        self.documents.docs[doc_id] = {
            "_id": doc_id,
            "reference": reference,
            "organisation_id": "org-elsewhere",
            "external_ref": doc_id,
            "idempotency_key": doc_id,
        }

    @property
    def cases(self) -> dict[str, Case]:
        """Every case as stored, opened with its key."""
        return {
            doc_id: _from_document(doc, self.keys.keys.get(doc_id))
            for doc_id, doc in self.documents.docs.items()
            if doc_id not in self.elsewhere
        }

    async def add_many(self, cases: Sequence[NewCase]) -> list[DuplicateDocumentError | None]:
        self.add_many_calls += 1
        refusals: list[DuplicateDocumentError | None] = []
        for new in cases:
            fields = await self.codec.encode(new.case)
            doc = {k: v for k, v in fields.items() if v is not UNSET}
            doc["_id"] = new.case.id
            try:
                await self.documents.insert(doc, [e.entry() for e in new.events])
            except DuplicateDocumentError as exc:
                refusals.append(exc)
            else:
                refusals.append(None)
        return refusals

    async def external_ref_owners(
        self, organisation_id: str, external_refs: Sequence[str]
    ) -> dict[str, str]:
        self.external_ref_lookups += 1
        return {
            d["external_ref"]: d["_id"]
            for d in self.documents.docs.values()
            if d["organisation_id"] == organisation_id and d["external_ref"] in external_refs
        }

    async def earlier_of(
        self, organisation_id: str, idempotency_keys: Sequence[str]
    ) -> dict[str, EarlierCase]:
        return {
            d["idempotency_key"]: EarlierCase(
                d["_id"],
                d["reference"],
                d["external_ref"],
                IdempotencyRecord(d["idempotency_key"], d.get("request_hash")),
            )
            for d in self.documents.docs.values()
            if d["idempotency_key"] in idempotency_keys and d["organisation_id"] == organisation_id
        }

    async def get(self, case_id: str, organisation_id: str | None = None) -> Case | None:
        case = self.cases.get(case_id)
        if case is None or (organisation_id and case.organisation_id != organisation_id):
            return None
        return case

    async def page(
        self, organisation_id: str | None, filters: CaseFilters, cursor: str | None, limit: int
    ) -> CasePage:
        """As the store: filters, then `filters.sort` order, then keyset pagination."""
        f = filters
        summaries = [
            _summary(c)
            for c in self.cases.values()
            if (organisation_id is None or c.organisation_id == organisation_id)
            and (f.status is None or c.status.value == f.status)
            and (f.external_ref is None or c.external_ref == f.external_ref)
            and (f.reference is None or c.reference == f.reference)
            and (f.employment_country is None or _country(c) == f.employment_country)
            and (f.claim_type is None or f.claim_type in _claim_types(c))
            and (f.submitted_from is None or c.submitted_at >= f.submitted_from)
            and (f.submitted_to is None or c.submitted_at < f.submitted_to)
        ]
        after = None if cursor is None else CaseCursor.decode(cursor, f.sort)
        if f.sort is CaseSort.DEADLINE:
            # Nearest deadline first, then those without one; ties by id.
            def by_deadline(s: CaseSummary) -> tuple[bool, str, str]:
                return (s.deadline is None, s.deadline.isoformat() if s.deadline else "", s.id)

            summaries.sort(key=by_deadline)
            if after is not None:
                last = (after.key is None, after.key or "", after.case_id)
                summaries = [s for s in summaries if by_deadline(s) > last]
        else:
            summaries.sort(key=lambda s: (s.submitted_at, s.id), reverse=True)
            if after is not None:
                last_at = (after.submitted_at, after.case_id)
                summaries = [s for s in summaries if (s.submitted_at, s.id) < last_at]
        items = summaries[:limit]
        more = len(summaries) > limit
        return CasePage(items, CaseCursor.after(f.sort, items[-1]).encode() if more else None)


def _country(case: Case) -> str | None:
    return None if case.submission is None else case.submission.employment.country


def _claim_types(case: Case) -> tuple[str, ...]:
    claims = () if case.submission is None else case.submission.claims
    return tuple(sorted({c.type.value for c in claims}))


def _summary(case: Case) -> CaseSummary:
    referral = case.referral
    deadline = None if referral is None else referral.deadline
    return CaseSummary(
        id=case.id,
        reference=case.reference,
        external_ref=case.external_ref,
        status=case.status,
        submitted_at=case.submitted_at,
        updated_at=case.updated_at,
        employment_country=_country(case),
        claim_types=_claim_types(case),
        deadline=None if deadline is None else date.fromisoformat(deadline),
        deadline_verified=None if referral is None else referral.deadline_verified,
    )


NOW = datetime(2026, 9, 16, 8, 0, tzinfo=UTC)


def service() -> tuple[CaseService, InMemoryCases, FakeKeyVault]:
    vault = FakeKeyVault()
    cases = InMemoryCases(vault)
    return (
        CaseService(cases, CachedCaseKeys(vault, ahead=2), lambda: NOW, on_commit=cases.committed),
        cases,
        vault,
    )


async def kept_keys(svc: CaseService, vault: FakeKeyVault) -> set[str]:
    """The vault's keys once those stored ahead and never used are discarded (as at
    intake's shutdown)."""
    assert isinstance(svc.keys, CachedCaseKeys)
    await svc.keys.discard_unused()
    return set(vault.keys)


async def submitted(svc: CaseService, key: str | None = None, body: str = "h1") -> Case:
    case, _ = await svc.submit(CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", key, body)
    return case


async def test_submitting_stores_the_case_and_its_sealed_event_together() -> None:
    svc, cases, vault = service()
    case = await submitted(svc)
    assert case.status is CaseStatus.SUBMITTED
    assert [e.type for e in case.timeline] == [ev.CaseSubmitted.TYPE]
    [event] = cases.outbox
    payload = ev.parse_payload(event, ev.CaseSubmitted)
    assert (event.subject, payload.reference) == (case.id, case.reference)
    key = await vault.get(case.id)
    assert key.decrypt("worker.phone", payload.worker.phone) == "+6281234567890"
    assert key.decrypt("worker.full_name", payload.worker.full_name) == "Contoh Pekerja"
    assert payload.consent.consent_id == case.consents[0].id
    for secret in ("Contoh", "6281234567890", "1994-05-17", "Lampung", "Gaji tiga", "Majikan"):
        assert secret not in event.model_dump_json()


async def test_same_idempotency_key_and_body_returns_the_original_once() -> None:
    svc, cases, _ = service()
    first = await submitted(svc, key="retry-1")
    again, created = await svc.submit(
        CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", "retry-1", "h1"
    )
    assert (again.id, created) == (first.id, False)
    assert len(cases.cases) == 1
    assert len(cases.outbox) == 1


async def test_a_retry_after_erasure_answers_the_erased_case_and_leaves_no_key() -> None:
    svc, _, vault = service()
    first = await submitted(svc, key="retry-1")
    await svc.erase(first.id, "org-ngo", "org-ngo")
    again, created = await svc.submit(
        CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", "retry-1", "h1"
    )
    assert (again.id, created, again.status) == (first.id, False, CaseStatus.ERASED)
    with pytest.raises(CaseKeyMissingError):
        await vault.get(first.id)


async def test_same_idempotency_key_with_another_body_is_a_conflict() -> None:
    svc, _, _ = service()
    await submitted(svc, key="retry-1")
    with pytest.raises(IdempotencyConflictError):
        await svc.submit(CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", "retry-1", "h2")


async def test_correction_needs_the_current_version_and_emits_sealed_parts() -> None:
    svc, cases, vault = service()
    case = await submitted(svc)
    with pytest.raises(VersionMismatchError):
        await svc.correct(
            case.id, "org-ngo", case.version + 5, {"worker": {"phone": "+6281298765432"}}, "org-ngo"
        )
    corrected = await svc.correct(
        case.id, "org-ngo", case.version, {"worker": {"phone": "+6281298765432"}}, "org-ngo"
    )
    assert corrected.submission is not None
    assert corrected.submission.worker.phone == "+6281298765432"
    assert corrected.submission.worker.full_name == "Contoh Pekerja"  # merge, not replace
    assert corrected.version == case.version + 1
    event = ev.parse_payload(cases.outbox[-1], ev.CaseDetailsCorrected)
    assert event.worker is not None
    assert event.employment is None
    key = await vault.get(case.id)
    assert key.decrypt("worker.phone", event.worker.phone) == "+6281298765432"


async def test_consents_are_recorded_and_withdrawn_with_events() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    consent = Consent.model_validate({**EXAMPLE_CASE["consent"], "share_with_countries": ["SG"]})
    _, record = await svc.add_consent(case.id, "org-ngo", consent, "org-ngo")
    recorded = ev.parse_payload(cases.outbox[-1], ev.ConsentRecorded)
    assert recorded.consent.consent_id == record.id
    assert recorded.consent.share_with_countries == ("SG",)
    after = await svc.withdraw_consent(case.id, "org-ngo", record.id, "org-ngo")
    withdrawn = ev.parse_payload(cases.outbox[-1], ev.ConsentWithdrawn)
    assert withdrawn.consent_id == record.id
    assert not after.consents[1].active
    with pytest.raises(CaseStateError):
        await svc.withdraw_consent(case.id, "org-ngo", record.id, "org-ngo")


async def test_closing_records_the_outcome_and_blocks_further_changes() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    closed = await svc.close(
        case.id, "org-ngo", "recovered", [Money(currency="HKD", value="9000.00")], "org-ngo"
    )
    assert closed.status is CaseStatus.CLOSED
    assert closed.outcome is not None
    assert closed.outcome.amounts_recovered == (("HKD", "9000.00"),)
    assert ev.parse_payload(cases.outbox[-1], ev.CaseClosed).outcome == "recovered"
    with pytest.raises(CaseStateError):
        await svc.add_note(case.id, "org-ngo", "late note", "org-ngo")


async def test_erasure_drops_personal_data_and_destroys_the_key() -> None:
    svc, cases, vault = service()
    case = await submitted(svc)
    await svc.add_note(case.id, "org-ngo", "Sensitive note", "org-ngo")
    assert cases.codec.remembers(case.id)  # her values, to seal unchanged fields alike
    erased = await svc.erase(case.id, "org-ngo", "org-ngo")
    assert erased.status is CaseStatus.ERASED
    assert not cases.codec.remembers(case.id)  # nor kept in this process's memory
    assert erased.submission is None
    assert erased.notes == ()
    assert all(c.consent is None for c in erased.consents)
    assert ev.parse_payload(cases.outbox[-1], ev.CaseErased).case_id == case.id
    with pytest.raises(CaseKeyMissingError):
        await vault.get(case.id)
    again = await svc.erase(case.id, "org-ngo", "org-ngo")  # idempotent
    assert again.status is CaseStatus.ERASED


async def test_the_codec_keeps_a_cases_values_a_minute_after_their_last_use_at_most() -> None:
    vault, now = FakeKeyVault(), [0.0]
    cases = InMemoryCases(vault)
    cases.codec = CaseCodec(vault, remember_seconds=60, clock=lambda: now[0])
    svc = CaseService(cases, CachedCaseKeys(vault), lambda: NOW, on_commit=cases.committed)
    first = await submitted(svc)
    now[0] = 59.0
    other = CaseSubmission.model_validate(example_case(external_ref="EXT-OTHER"))
    second, _ = await svc.submit(other, "org-ngo", "key-2", "h2")
    assert cases.codec.remembers(first.id)
    now[0] = 61.0
    await svc.add_note(second.id, "org-ngo", "A note", "org-ngo")
    assert (cases.codec.remembers(first.id), cases.codec.remembers(second.id)) == (False, True)


class SealingCounts:
    """How often the codec opened or sealed a submission (AES and validation each time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = self.sealed = 0
        real_open, real_seal = repository_module.open_submission, repository_module.seal_submission

        def counted_open(sealed: Document, key: DataKey) -> Document:
            self.opened += 1
            return real_open(sealed, key)

        def counted_seal(submission: Document, key: DataKey) -> Document:
            self.sealed += 1
            return real_seal(submission, key)

        monkeypatch.setattr(repository_module, "open_submission", counted_open)
        monkeypatch.setattr(repository_module, "seal_submission", counted_seal)


async def test_a_change_leaving_her_submission_alone_neither_opens_nor_seals_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc, cases, _ = service()
    counts = SealingCounts(monkeypatch)
    case = await submitted(svc)
    assert (counts.opened, counts.sealed) == (0, 1)
    stored = cases.documents.docs[case.id]["submission"]
    await svc.apply_news(news(offer(case.id), case.id))
    await svc.add_note(case.id, "org-ngo", "Called her", "org-ngo")
    assert (counts.opened, counts.sealed) == (0, 1)
    assert cases.documents.docs[case.id]["submission"] == stored

    corrected = await svc.correct(
        case.id, "org-ngo", case.version + 2, {"worker": {"phone": "+6281298765432"}}, "org-ngo"
    )
    assert (counts.opened, counts.sealed) == (0, 2)  # changed: sealed again
    await svc.apply_news(news(offer(case.id, "r2"), case.id))
    assert (counts.opened, counts.sealed) == (0, 2)
    assert cases.documents.docs[case.id]["submission"] != stored
    # What is stored opens (without the codec's memory) to the corrected submission.
    assert cases.cases[case.id].submission == corrected.submission


async def test_a_submission_another_instance_changed_is_opened_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc, cases, vault = service()
    counts = SealingCounts(monkeypatch)
    case = await submitted(svc)
    other = InMemoryCases(vault)  # a second intake process, on the same store
    other.documents = cases.documents
    elsewhere = CaseService(other, CachedCaseKeys(vault), lambda: NOW, on_commit=other.committed)
    await elsewhere.correct(
        case.id, "org-ngo", case.version, {"worker": {"phone": "+6281298765432"}}, "org-ngo"
    )
    opened_before = counts.opened
    await svc.apply_news(news(offer(case.id), case.id))
    assert counts.opened == opened_before + 1  # what this process remembered is stale
    after = cases.cases[case.id]
    assert after.submission is not None
    assert after.submission.worker.phone == "+6281298765432"
    assert after.submission.worker.full_name == "Contoh Pekerja"


def offer(case_id: str, referral_id: str = "r1") -> ev.ReferralOffered:
    return ev.ReferralOffered(
        referral_id=referral_id,
        case_id=case_id,
        partner_organisation_id="org-hk",
        country="HK",
        offered_at=NOW,
    )


def news(payload: ev.EventPayload, case_id: str) -> CloudEvent:
    return ev.make_event(payload, source="/lintas/referral", subject=case_id)


async def test_routing_news_moves_the_status_once_per_event() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    offered = news(
        ev.ReferralOffered(
            referral_id="r1",
            case_id=case.id,
            partner_organisation_id="org-hk",
            country="HK",
            offered_at=NOW,
        ),
        case.id,
    )
    await svc.apply_news(offered)
    await svc.apply_news(offered)  # redelivery
    after = cases.cases[case.id]
    assert after.status is CaseStatus.REFERRED
    assert after.referral is not None
    assert after.referral.partner_organisation_id == "org-hk"
    assert [e.type for e in after.timeline].count(ev.ReferralOffered.TYPE) == 1

    accepted = news(
        ev.ReferralAccepted(
            referral_id="r1",
            case_id=case.id,
            partner_organisation_id="org-hk",
            country="HK",
            at=NOW + timedelta(hours=5),
        ),
        case.id,
    )
    await svc.apply_news(accepted)
    assert cases.cases[case.id].status is CaseStatus.ACCEPTED
    progressed = news(
        ev.ReferralProgressed(
            referral_id="r1",
            case_id=case.id,
            partner_organisation_id="org-hk",
            country="HK",
            at=NOW,
            documents_needed=True,
        ),
        case.id,
    )
    await svc.apply_news(progressed)
    assert cases.cases[case.id].status is CaseStatus.IN_PROGRESS


async def test_news_writes_only_what_it_changed_and_keeps_the_sealed_fields_as_stored() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    before = await cases.documents.read(case.id)
    assert before is not None
    writes: list[Write] = []
    write = cases.documents.write

    async def recording(doc_id: str, expected_version: int, change: Write) -> bool:
        writes.append(change)
        return await write(doc_id, expected_version, change)

    cases.documents.write = recording  # type: ignore[method-assign]
    offered = ev.ReferralOffered(
        referral_id="r1",
        case_id=case.id,
        partner_organisation_id="org-hk",
        country="HK",
        offered_at=NOW,
    )
    await svc.apply_news(news(offered, case.id))

    [change] = writes
    assert set(change.set) == {"status", "referral", "timeline", "updated_at"}
    after = await cases.documents.read(case.id)
    assert after is not None
    # Every sealed token as it was: opened and sealed again, each gives the stored one.
    assert (after["submission"], after["consents"]) == (before["submission"], before["consents"])
    assert after["timeline"][0] == before["timeline"][0]


async def test_a_cases_news_from_one_batch_are_applied_in_order_in_one_write() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    writes_before = cases.documents.writes
    offered = news(offer(case.id), case.id)
    sent = ev.make_event(
        ev.SmsSent(
            case_id=case.id,
            message_id="m1",
            template="case_received",
            language="id",
            sent_at=NOW,
        ),
        source="/lintas/notify",
        subject=case.id,
    )
    await svc.apply_news_together([offered, sent])
    assert cases.documents.writes == writes_before + 1
    after = cases.cases[case.id]
    assert after.status is CaseStatus.REFERRED
    assert [e.type for e in after.timeline][-2:] == [ev.ReferralOffered.TYPE, ev.SmsSent.TYPE]

    await svc.apply_news_together([offered, sent])  # the batch redelivered
    await svc.apply_news(sent)
    assert cases.documents.writes == writes_before + 1
    assert len(cases.cases[case.id].timeline) == len(after.timeline)


async def test_news_of_two_cases_are_never_applied_together() -> None:
    svc, cases, _ = service()
    first = await submitted(svc)
    second, _ = await svc.submit(
        CaseSubmission.model_validate(example_case(external_ref="NGO-2")), "org-ngo", None, "h2"
    )
    together = [news(offer(first.id), first.id), news(offer(second.id), second.id)]
    with pytest.raises(ValueError, match="more than one case"):
        await svc.apply_news_together(together)
    assert {cases.cases[c.id].status for c in (first, second)} == {CaseStatus.SUBMITTED}


async def test_news_about_an_old_referral_does_not_move_the_status() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    await svc.apply_news(
        news(
            ev.ReferralOffered(
                referral_id="r2",
                case_id=case.id,
                partner_organisation_id="org-hk-2",
                country="HK",
                offered_at=NOW,
            ),
            case.id,
        )
    )
    await svc.apply_news(
        news(
            ev.ReferralAccepted(
                referral_id="r1",
                case_id=case.id,
                partner_organisation_id="org-hk-1",
                country="HK",
                at=NOW,
            ),
            case.id,
        )
    )
    assert cases.cases[case.id].status is CaseStatus.REFERRED


async def test_routing_blocked_shows_the_reason_and_closed_cases_stay_closed() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    await svc.apply_news(
        news(
            ev.CaseRoutingBlocked(
                case_id=case.id,
                status="awaiting_consent",
                reason="consent does not cover sharing with HK",
            ),
            case.id,
        )
    )
    assert cases.cases[case.id].status is CaseStatus.AWAITING_CONSENT
    assert cases.cases[case.id].status_reason == "consent does not cover sharing with HK"
    cases.documents.docs[case.id]["status"] = CaseStatus.CLOSED.value
    await svc.apply_news(
        news(
            ev.ReferralOffered(
                referral_id="r1",
                case_id=case.id,
                partner_organisation_id="org-hk",
                country="HK",
                offered_at=NOW,
            ),
            case.id,
        )
    )
    assert cases.cases[case.id].status is CaseStatus.CLOSED


async def test_news_about_an_unknown_case_is_a_permanent_error() -> None:
    svc, _, _ = service()
    with pytest.raises(PermanentEventError):
        await svc.apply_news(
            news(
                ev.ReferralOffered(
                    referral_id="r",
                    case_id="nope",
                    partner_organisation_id="o",
                    country="HK",
                    offered_at=NOW,
                ),
                "nope",
            )
        )


async def test_a_key_whose_insert_failed_otherwise_is_never_handed_out_again() -> None:
    svc, cases, _vault = service()
    assert isinstance(svc.keys, CachedCaseKeys)
    handed: list[str] = []
    insert = cases.documents.insert

    async def lost_answer(doc: Document, entries: Sequence[Document]) -> None:
        handed.append(doc["_id"])
        await insert(doc, entries)
        raise ConnectionError("the answer was lost")  # stored, but nobody knows

    cases.documents.insert = lost_answer  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await submitted(svc, key="k-lost")
    cases.documents.insert = insert  # type: ignore[method-assign]
    other = CaseSubmission.model_validate(example_case(external_ref="EXT-NEXT"))
    again, _ = await svc.submit(other, "org-ngo", "k-next", "h2")
    assert handed[0] in cases.cases
    assert again.id != handed[0]  # its key stays the stored case's alone


async def test_an_insert_stored_but_answered_as_taken_by_id_is_this_requests_case() -> None:
    svc, cases, vault = service()
    insert = cases.documents.insert

    async def stored_then_refused(doc: Document, entries: Sequence[Document]) -> None:
        # A batch that failed as a whole after the store applied it, tried again alone.
        await insert(doc, entries)
        raise DuplicateDocumentError(by_id=True)

    cases.documents.insert = stored_then_refused  # type: ignore[method-assign]
    case, created = await svc.submit(
        CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", None, "h"
    )
    cases.documents.insert = insert  # type: ignore[method-assign]
    assert created
    assert case.id in cases.cases
    assert case.id in await kept_keys(svc, vault)  # its key was not given back
    other = CaseSubmission.model_validate(example_case(external_ref="EXT-NEXT"))
    again, _ = await svc.submit(other, "org-ngo", None, "h2")
    assert again.id != case.id


async def test_external_ref_reuse_frees_the_unused_key() -> None:
    svc, cases, vault = service()
    await submitted(svc)
    with pytest.raises(DuplicateExternalRefError):
        await svc.submit(CaseSubmission.model_validate(example_case()), "org-ngo", None, "h")
    assert len(await kept_keys(svc, vault)) == 1
    # The first refusal is redrawn as a reference collision; the second one looks.
    assert cases.external_ref_lookups == 1


async def test_a_reference_collision_is_redrawn_without_looking_for_the_external_ref(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc, cases, _ = service()
    cases.hold_reference("LB-TAKEN")
    draws = iter(["LB-TAKEN", "LB-FRESH"])
    monkeypatch.setattr(handlers_module, "new_case_reference", lambda: next(draws))
    case, created = await svc.submit(
        CaseSubmission.model_validate(example_case()), "org-ngo", None, "h"
    )
    assert created
    assert case.reference == "LB-FRESH"
    assert cases.external_ref_lookups == 0


def texted(
    case_id: str, opted_out: bool, at: datetime, source: str = "/lintas/notify"
) -> CloudEvent:
    """Notify's announcement of a STOP or START she texted."""
    payload = ev.SmsPreferenceTexted(case_id=case_id, opted_out=opted_out, changed_at=at)
    return ev.make_event(payload, source=source, subject=case_id)


async def test_a_preference_she_texted_is_shown_once_and_announced_by_nobody() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    announced = len(cases.outbox)
    stop = texted(case.id, True, NOW + timedelta(minutes=5))
    await svc.apply_sms_preference(stop)
    await svc.apply_sms_preference(stop)  # redelivered
    after = cases.cases[case.id]
    assert after.sms_opted_out
    assert (after.sms_preference_channel, after.sms_preference_at) == (
        "sms",
        NOW + timedelta(minutes=5),
    )
    [entry] = [e for e in after.timeline if e.type == ev.SmsPreferenceTexted.TYPE]
    assert (entry.source, entry.summary) == ("notify", "worker opted out of SMS by text message")
    assert len(cases.outbox) == announced  # applying it announces nothing: no echo


async def test_intakes_own_announcement_coming_back_is_skipped() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    await svc.set_sms_preference(case.id, "org-ngo", True, "org-ngo")
    own = cases.outbox[-1]
    assert (own.type, own.source) == (ev.SmsPreferenceChanged.TYPE, "/lintas/intake")
    version, announced = cases.cases[case.id].version, len(cases.outbox)
    await svc.apply_sms_preference(own)
    # Even one claiming notify's channel but from intake's source is not applied.
    await svc.apply_sms_preference(texted(case.id, False, NOW + timedelta(hours=1), "/x"))
    assert (cases.cases[case.id].version, len(cases.outbox)) == (version, announced)
    assert cases.cases[case.id].sms_opted_out


async def test_the_latest_preference_stands_whichever_way_it_came() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    await svc.set_sms_preference(case.id, "org-ngo", True, "org-ngo")  # at NOW, by API
    await svc.apply_sms_preference(texted(case.id, False, NOW - timedelta(hours=1)))
    after = cases.cases[case.id]
    assert (after.sms_opted_out, after.sms_preference_channel) == (True, "api")
    assert after.timeline[-1].summary == (
        "worker opted back into SMS by text message (a later change stands)"
    )
    await svc.apply_sms_preference(texted(case.id, False, NOW + timedelta(hours=1)))
    after = cases.cases[case.id]
    assert (after.sms_opted_out, after.sms_preference_channel) == (False, "sms")


async def test_a_texted_preference_for_an_unknown_case_is_a_permanent_error() -> None:
    svc, _, _ = service()
    with pytest.raises(PermanentEventError):
        await svc.apply_sms_preference(texted("nope", True, NOW))


async def test_each_step_a_person_takes_names_them_in_the_timeline() -> None:
    svc, cases, _ = service()
    person = "person-caseworker-1"
    case, _ = await svc.submit(
        CaseSubmission.model_validate(EXAMPLE_CASE), "org-ngo", None, "h1", person_id=person
    )
    consent = Consent.model_validate({**EXAMPLE_CASE["consent"], "share_with_countries": ["SG"]})
    _, record = await svc.add_consent(case.id, "org-ngo", consent, "org-ngo", person)
    await svc.withdraw_consent(case.id, "org-ngo", record.id, "org-ngo", person)
    await svc.add_note(case.id, "org-ngo", "Called her", "org-ngo", person)
    await svc.set_sms_preference(case.id, "org-ngo", True, "org-ngo", person)
    await svc.add_note(case.id, "org-ngo", "By the NGO's system", "org-ngo")  # an API key
    await svc.close(case.id, "org-ngo", "withdrawn", [], "org-ngo", person)
    await svc.erase(case.id, "org-ngo", "org-ngo", person)

    steps = [(e.summary, e.actor, e.person_id) for e in cases.cases[case.id].timeline]
    assert steps == [
        ("case submitted", "org-ngo", person),
        ("consent recorded", "org-ngo", person),
        ("consent withdrawn", "org-ngo", person),
        ("note added", "org-ngo", person),
        ("worker opted out of SMS", "org-ngo", person),
        ("note added", "org-ngo", None),
        ("case closed: withdrawn", "org-ngo", person),
        ("personal data erased", "org-ngo", person),
    ]


async def test_a_referral_step_a_lawyer_took_names_them_in_the_ngos_timeline() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    base = {"referral_id": "r1", "case_id": case.id, "partner_organisation_id": "org-hk"}
    await svc.apply_news(
        news(
            ev.ReferralOffered(**base, country="HK", offered_at=NOW),
            case.id,
        )
    )
    await svc.apply_news(
        news(
            ev.ReferralAccepted(**base, country="HK", at=NOW, by_person_id="person-lawyer-7"),
            case.id,
        )
    )
    [offered, accepted] = [e for e in cases.cases[case.id].timeline if e.source == "referral"]
    assert (offered.summary, offered.actor, offered.person_id) == ("offered", "org-hk", None)
    assert (accepted.summary, accepted.actor, accepted.person_id) == (
        "accepted",
        "org-hk",
        "person-lawyer-7",
    )


# --- the case list: reference, deadline order ------------------------------------------


async def listed_cases(svc: CaseService, deadlines: list[date | None]) -> list[Case]:
    """One case per deadline (None: offered without one; the last is never offered)."""
    made = []
    for n, deadline in enumerate(deadlines):
        body = CaseSubmission.model_validate(example_case(external_ref=f"NGO-{n}"))
        case, _ = await svc.submit(body, "org-ngo", None, f"h{n}")
        if deadline is not None or n < len(deadlines) - 1:
            summary = None
            if deadline is not None:
                summary = ev.DeadlineSummary(date=deadline, basis="rule", verified=n % 2 == 0)
            offered = ev.ReferralOffered(
                referral_id=f"r{n}",
                case_id=case.id,
                partner_organisation_id="org-hk",
                country="HK",
                offered_at=NOW,
                deadline=summary,
            )
            await svc.apply_news(news(offered, case.id))
        made.append(case)
    return made


async def test_the_list_finds_a_case_by_its_reference() -> None:
    svc, _, _ = service()
    first, second = await listed_cases(svc, [None, None])
    page = await svc.list_cases("org-ngo", CaseFilters(reference=second.reference), None, 10)
    assert [c.id for c in page.items] == [second.id]
    assert (
        await svc.list_cases("org-ngo", CaseFilters(reference="LB-XXXXX"), None, 10)
    ).items == []
    assert (
        await svc.list_cases("org-other", CaseFilters(reference=first.reference), None, 10)
    ).items == []


async def test_nearest_deadline_first_and_cases_without_one_last_across_pages() -> None:
    svc, _, _ = service()
    d = date(2026, 10, 1)
    cases = await listed_cases(svc, [None, d + timedelta(days=9), d, d, None])
    by_deadline = CaseFilters(sort=CaseSort.DEADLINE)
    first = await svc.list_cases("org-ngo", by_deadline, None, 3)
    second = await svc.list_cases("org-ngo", by_deadline, first.next_cursor, 3)
    tied = sorted([cases[2].id, cases[3].id])
    undated = sorted([cases[0].id, cases[4].id])
    assert [c.id for c in first.items] == [*tied, cases[1].id]
    assert [c.id for c in second.items] == undated
    assert second.next_cursor is None
    expected = {
        cases[0].id: (None, None),
        cases[1].id: (d + timedelta(days=9), False),
        cases[2].id: (d, True),
        cases[3].id: (d, False),
        cases[4].id: (None, None),
    }
    assert {c.id: (c.deadline, c.deadline_verified) for c in first.items + second.items} == (
        expected
    )
    # A page boundary between the null deadlines holds too.
    pages = [await svc.list_cases("org-ngo", by_deadline, None, 4)]
    pages.append(await svc.list_cases("org-ngo", by_deadline, pages[0].next_cursor, 4))
    assert [c.id for p in pages for c in p.items] == [*tied, cases[1].id, *undated]


async def test_a_cursor_pages_only_its_own_sort() -> None:
    svc, _, _ = service()
    await listed_cases(svc, [date(2026, 10, 1), None, None])
    by_deadline = await svc.list_cases("org-ngo", CaseFilters(sort=CaseSort.DEADLINE), None, 1)
    newest = await svc.list_cases("org-ngo", CaseFilters(), None, 1)
    assert by_deadline.next_cursor
    assert newest.next_cursor
    with pytest.raises(CursorError, match="sort=deadline"):
        await svc.list_cases("org-ngo", CaseFilters(), by_deadline.next_cursor, 1)
    with pytest.raises(CursorError, match="sort=submitted"):
        await svc.list_cases("org-ngo", CaseFilters(sort=CaseSort.DEADLINE), newest.next_cursor, 1)
    with pytest.raises(CursorError):
        CaseCursor.decode("not-a-cursor", CaseSort.SUBMITTED)


def batch_item(key: str, external_ref: str, body: str | None = None) -> NewSubmission:
    return NewSubmission(
        CaseSubmission.model_validate(example_case(external_ref=external_ref)),
        key,
        body or f"hash-{key}",
    )


async def test_a_batch_is_one_read_one_insert_and_each_case_gets_its_own_answer() -> None:
    svc, cases, vault = service()
    earlier = await submitted(svc, key="k-0")  # EXAMPLE_CASE's external_ref
    assert earlier.submission is not None
    taken_ref = earlier.submission.external_ref
    items = [
        batch_item("k-1", "B-1"),
        NewSubmission(CaseSubmission.model_validate(EXAMPLE_CASE), "k-0", "h1"),  # a replay
        NewSubmission(CaseSubmission.model_validate(EXAMPLE_CASE), "k-0", "other"),  # new body
        batch_item("k-2", taken_ref),  # another key, a taken external_ref
        batch_item("k-3", "B-3"),
        batch_item("k-3", "B-3", body="hash-k-3"),  # the same key again in the batch
    ]
    results = await svc.submit_many(items, "org-ngo")

    created, replay, conflict, taken, third, third_again = results
    assert isinstance(created, Submitted)
    assert created.created
    assert replay == Submitted(earlier.id, earlier.reference, earlier.external_ref, False)
    assert isinstance(conflict, IdempotencyConflictError)
    assert isinstance(taken, DuplicateExternalRefError)
    assert taken.existing_case_id == earlier.id
    assert isinstance(third, Submitted)
    assert third.created
    assert third_again == replace(third, created=False)
    # Two created, each with its `case submitted` event sealed with its own key.
    stored = cases.cases
    assert {created.id, third.id} <= stored.keys()
    submitted_events = [e for e in cases.outbox if e.type == ev.CaseSubmitted.TYPE]
    assert [e.subject for e in submitted_events] == [earlier.id, created.id, third.id]
    payload = ev.parse_payload(submitted_events[1], ev.CaseSubmitted)
    assert (await vault.get(created.id)).decrypt("worker.phone", payload.worker.phone)
    assert stored[third.id].idempotency_key == "k-3"
    # No key is left for a case never stored.
    assert await kept_keys(svc, vault) == {earlier.id, created.id, third.id}
    # The refused external_ref was looked for once, after its redraw was refused again.
    assert cases.external_ref_lookups == 1


async def test_a_batch_sent_again_creates_nothing() -> None:
    svc, cases, _ = service()
    items = [batch_item(f"k-{n}", f"B-{n}") for n in range(5)]
    first = await svc.submit_many(items, "org-ngo")
    calls = cases.add_many_calls
    again = await svc.submit_many(items, "org-ngo")
    assert [r.created for r in first if isinstance(r, Submitted)] == [True] * 5
    assert again == [replace(r, created=False) for r in first if isinstance(r, Submitted)]
    assert cases.add_many_calls == calls  # nothing left to insert
    assert len(cases.outbox) == 5


async def test_a_batch_redraws_a_taken_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, cases, _ = service()
    cases.hold_reference("LB-TAKEN")
    draws = iter(["LB-TAKEN", "LB-FRESH-1", "LB-FRESH-2"])
    monkeypatch.setattr(handlers_module, "new_case_reference", lambda: next(draws))
    results = await svc.submit_many([batch_item("a", "B-a"), batch_item("b", "B-b")], "org-ngo")
    assert [r.reference for r in results if isinstance(r, Submitted)] == [
        "LB-FRESH-2",
        "LB-FRESH-1",
    ]
    assert cases.external_ref_lookups == 0


async def test_news_an_older_version_recorded_as_processed_is_not_applied_again() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    offered = news(
        ev.ReferralOffered(
            referral_id="r1",
            case_id=case.id,
            partner_organisation_id="org-hk",
            country="HK",
            offered_at=NOW,
        ),
        case.id,
    )
    # A document written before the unit of work kept the same field.
    cases.documents.docs[case.id]["processed_events"] = [offered.dedupe_key]
    await svc.apply_news(offered)
    assert cases.cases[case.id].status is CaseStatus.SUBMITTED
    assert cases.cases[case.id].version == case.version


async def test_another_organisations_case_is_not_found_whatever_version_is_named() -> None:
    svc, _, _ = service()
    case = await submitted(svc)
    with pytest.raises(CaseNotFoundError):
        await svc.correct(case.id, "org-other", case.version + 3, {"worker": {}}, "org-other")
    with pytest.raises(CaseNotFoundError):
        await svc.add_note(case.id, "org-other", "x", "org-other")


async def test_a_change_that_loses_a_race_is_decided_again() -> None:
    svc, cases, _ = service()
    case = await submitted(svc)
    write = cases.documents.write
    raced = False

    async def racing(doc_id: str, expected_version: int, change: Write) -> bool:
        nonlocal raced
        if not raced:  # another instance writes first
            raced = True
            doc = cases.documents.docs[doc_id]
            doc["version"] += 1
        return await write(doc_id, expected_version, change)

    cases.documents.write = racing  # type: ignore[method-assign]
    _, note = await svc.add_note(case.id, "org-ngo", "kept", "org-ngo")
    after = cases.cases[case.id]
    assert [n.id for n in after.notes] == [note.id]
    assert after.version == case.version + 2
