"""MongoCaseRepository (and the unit of work on its documents) on the real
MongoDB-protocol server: sealing, scoping, versions, unique keys, the batch insert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from lintas_intake.adapters.case_repository import MongoCaseRepository
from lintas_intake.domain.case import Case, CaseStatus, ReferralSummary
from lintas_intake.domain.records import ConsentRecord, Note
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.handlers import (
    CaseFilters,
    CaseSort,
    CursorError,
    NewCase,
)
from lintas_shared.crypto import KeyVault
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from lintas_shared.unit_of_work import (
    Decision,
    DuplicateDocumentError,
    MongoVersionedDocuments,
    UnitOfWork,
    VersionConflictError,
)
from pymongo import AsyncMongoClient

from tests.support.fixtures import example_case

pytestmark = pytest.mark.integration
NOW = datetime(2026, 9, 16, 8, 0, tzinfo=UTC)


def new_case(
    case_id: str,
    reference: str,
    external_ref: str = "NGO-1",
    organisation_id: str = "org-a",
    at: datetime = NOW,
) -> Case:
    submission = CaseSubmission.model_validate(example_case(external_ref=external_ref))
    return Case(
        id=case_id,
        reference=reference,
        organisation_id=organisation_id,
        external_ref=external_ref,
        submission=submission,
        submitted_at=at,
        updated_at=at,
        consents=(ConsentRecord("c-1", submission.consent, at, "org-a"),),
        idempotency_key=f"auto:{case_id}",
        request_hash="hash",
    )


@pytest.fixture
async def vault(mongo: AsyncMongoClient[Document], database_name: str) -> KeyVault:
    return KeyVault(mongo[database_name]["case_keys"], "test-master")


@pytest.fixture
async def repo(
    mongo: AsyncMongoClient[Document], database_name: str, vault: KeyVault
) -> MongoCaseRepository:
    repository = MongoCaseRepository(MongoVersionedDocuments(mongo[database_name]["cases"]), vault)
    await repository.ensure_indexes()
    return repository


def work(repo: MongoCaseRepository) -> UnitOfWork[Case]:
    return UnitOfWork(repo.documents, repo.codec)


async def add(repo: MongoCaseRepository, vault: KeyVault, case: Case) -> None:
    await vault.create(case.id)
    await work(repo).add(case)


async def save(repo: MongoCaseRepository, case: Case, expected_version: int) -> Case:
    """Write `case` as the next state of the stored one, at `expected_version`."""
    committed = await work(repo).change(
        case.id, lambda _: Decision(case), expected_version=expected_version
    )
    return committed.aggregate


async def test_personal_fields_are_sealed_at_rest_and_opened_on_read(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    case = replace(
        new_case("c1", "LB-AAAAA"), notes=(Note("n1", "Worker afraid of agency", "org-a", NOW),)
    )
    await add(repo, vault, case)
    raw = await repo.raw("c1")
    assert raw is not None
    text = str(raw)
    for secret in (
        "Contoh Pekerja",
        "6281234567890",
        "1994-05-17",
        "Lampung Timur",  # the home region as typed; only its province is kept (below)
        "Gaji tiga",
        "Majikan",
        "afraid",
    ):
        assert secret not in text
    assert raw["submission"]["worker"]["phone"].startswith("enc:v1:")
    assert raw["worker_facts"]["home_province"] == "Lampung"  # for the indicators
    assert raw["submission"]["employment"]["country"] == "HK"  # routing facts stay readable
    assert await repo.get("c1") == case


async def test_reads_are_scoped_to_the_owning_organisation(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    await add(repo, vault, new_case("c1", "LB-AAAAA"))
    assert await repo.get("c1", organisation_id="org-a") is not None
    assert await repo.get("c1", organisation_id="org-b") is None


async def test_external_ref_is_unique_per_organisation(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    await add(repo, vault, new_case("c1", "LB-AAAAA", "NGO-7"))
    with pytest.raises(DuplicateDocumentError) as info:
        await add(repo, vault, new_case("c2", "LB-CCCCC", "NGO-7"))
    assert not info.value.by_id
    assert await repo.external_ref_owners("org-a", ["NGO-7", "NGO-8"]) == {"NGO-7": "c1"}
    await add(repo, vault, new_case("c3", "LB-DDDDD", "NGO-7", organisation_id="org-b"))
    assert await repo.external_ref_owners("org-b", ["NGO-7"]) == {"NGO-7": "c3"}


async def test_a_taken_reference_or_id_is_refused_and_told_apart(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    first = new_case("c1", "LB-AAAAA", "NGO-1")
    await add(repo, vault, first)
    with pytest.raises(DuplicateDocumentError) as taken:
        await add(repo, vault, new_case("c2", "LB-AAAAA", "NGO-2"))
    assert not taken.value.by_id
    with pytest.raises(DuplicateDocumentError) as again:
        await add(repo, vault, first)
    assert again.value.by_id
    assert await repo.get("c2") is None


async def test_a_batch_insert_stores_or_refuses_each_case_on_its_own(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    await add(repo, vault, new_case("c1", "LB-AAAAA", "NGO-1"))
    batch = [
        new_case("c2", "LB-CCCCC", "NGO-2"),
        new_case("c1", "LB-DDDDD", "NGO-3"),  # the id is taken
        new_case("c3", "LB-AAAAA", "NGO-4"),  # the reference is taken
        new_case("c4", "LB-EEEEE", "NGO-1"),  # the external_ref is taken
        new_case("c5", "LB-FFFFF", "NGO-5"),
    ]
    for case in batch:
        await vault.create(case.id)
    refusals = await repo.add_many([NewCase(case, []) for case in batch])
    assert [None if r is None else r.by_id for r in refusals] == [None, True, False, False, None]
    assert await repo.get("c2") == batch[0]
    assert await repo.get("c5") == batch[4]
    assert await repo.get("c3") is None
    raw = await repo.raw("c5")
    assert raw is not None
    assert (raw["version"], raw[OUTBOX_FIELD], raw["idempotency_key"]) == (1, [], "auto:c5")
    found = await repo.earlier_of("org-a", ["auto:c1", "auto:c2", "auto:c3"])
    assert sorted(found) == ["auto:c1", "auto:c2"]
    earlier = found["auto:c2"]
    assert (earlier.id, earlier.reference, earlier.idempotency.request_hash) == (
        "c2",
        "LB-CCCCC",
        "hash",
    )
    assert await repo.earlier_of("org-b", ["auto:c1"]) == {}


async def test_a_change_refuses_a_stale_version(repo: MongoCaseRepository, vault: KeyVault) -> None:
    case = new_case("c1", "LB-AAAAA")
    await add(repo, vault, case)
    await save(repo, replace(case, status=CaseStatus.REFERRED, version=2), 1)
    with pytest.raises(VersionConflictError):
        await save(repo, replace(case, status=CaseStatus.UNASSIGNED, version=2), 1)
    stored = await repo.get("c1")
    assert stored is not None
    assert stored.status is CaseStatus.REFERRED


async def test_erased_case_keeps_no_personal_data_and_no_key(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    case = new_case("c1", "LB-AAAAA")
    await add(repo, vault, case)
    erased = replace(
        case,
        status=CaseStatus.ERASED,
        submission=None,
        version=2,
        consents=tuple(c.erased() for c in case.consents),
        request_hash=None,
    )
    await save(repo, erased, 1)
    await vault.destroy("c1")
    raw = await repo.raw("c1")
    assert raw is not None
    assert raw["submission"] is None
    assert "request_hash" not in raw  # it could confirm a guessed body
    assert raw[OUTBOX_FIELD] == []
    stored = await repo.get("c1")
    assert stored is not None
    assert (stored.status, stored.submission) == (CaseStatus.ERASED, None)


async def test_pages_are_stable_while_new_cases_arrive(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    for n in range(5):
        await add(
            repo,
            vault,
            new_case(f"c{n}", f"LB-AAA{'ACDEF'[n]}A", f"NGO-{n}", at=NOW + timedelta(minutes=n)),
        )
    first = await repo.page("org-a", CaseFilters(), None, 2)
    assert [c.id for c in first.items] == ["c4", "c3"]
    # Newer cases arrive between page requests: they do not shift the pages that follow.
    await add(repo, vault, new_case("c9", "LB-AAAAH", "NGO-9", at=NOW + timedelta(hours=1)))
    second = await repo.page("org-a", CaseFilters(), first.next_cursor, 2)
    third = await repo.page("org-a", CaseFilters(), second.next_cursor, 2)
    assert [c.id for c in second.items] == ["c2", "c1"]
    assert [c.id for c in third.items] == ["c0"]
    assert third.next_cursor is None


async def test_list_filters(repo: MongoCaseRepository, vault: KeyVault) -> None:
    await add(repo, vault, new_case("c1", "LB-AAAAA", "NGO-1"))
    other = new_case("c2", "LB-CCCCC", "NGO-2")
    assert other.submission is not None
    sg = other.submission.model_copy(
        update={"employment": other.submission.employment.model_copy(update={"country": "SG"})}
    )
    await add(repo, vault, replace(other, submission=sg))
    by_country = await repo.page("org-a", CaseFilters(employment_country="SG"), None, 10)
    assert [c.id for c in by_country.items] == ["c2"]
    by_type = await repo.page("org-a", CaseFilters(claim_type="unpaid_wages"), None, 10)
    assert {c.id for c in by_type.items} == {"c1", "c2"}
    by_ref = await repo.page("org-a", CaseFilters(external_ref="NGO-1"), None, 10)
    assert [c.id for c in by_ref.items] == ["c1"]
    assert (await repo.page("org-a", CaseFilters(claim_type="abuse"), None, 10)).items == []


def referred(case: Case, deadline: str | None, verified: bool | None = None) -> Case:
    referral = ReferralSummary("r-" + case.id, "org-hk", "HK", NOW, "offered", None, None)
    return replace(
        case,
        status=CaseStatus.REFERRED,
        referral=replace(referral, deadline=deadline, deadline_verified=verified),
    )


async def test_the_list_finds_a_case_by_its_reference(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    await add(repo, vault, new_case("c1", "LB-AAAAA", "NGO-1"))
    await add(repo, vault, new_case("c2", "LB-CCCCC", "NGO-2"))
    by_reference = await repo.page("org-a", CaseFilters(reference="LB-CCCCC"), None, 10)
    assert [c.id for c in by_reference.items] == ["c2"]
    assert (await repo.page("org-b", CaseFilters(reference="LB-CCCCC"), None, 10)).items == []


async def test_the_filing_deadline_is_stored_with_the_referral_and_follows_it(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    case = new_case("c1", "LB-AAAAA")
    await add(repo, vault, case)
    assert (await repo.raw("c1") or {})["filing_deadline"] is None
    offered = replace(referred(case, "2026-11-02", False), version=2)
    await save(repo, offered, 1)
    assert (await repo.raw("c1") or {})["filing_deadline"] == "2026-11-02"
    moved = replace(referred(case, "2026-10-20", True), version=3)
    await save(repo, moved, 2)
    assert (await repo.raw("c1") or {})["filing_deadline"] == "2026-10-20"
    [item] = (await repo.page("org-a", CaseFilters(), None, 10)).items
    assert (item.deadline, item.deadline_verified) == (date(2026, 10, 20), True)


async def test_nearest_deadline_first_and_cases_without_one_last_across_pages(
    repo: MongoCaseRepository,
    vault: KeyVault,
    mongo: AsyncMongoClient[Document],
    database_name: str,
) -> None:
    deadlines = {
        "c1": None,  # offered without a deadline
        "c2": "2026-10-10",
        "c3": "2026-10-01",
        "c4": "2026-10-01",
        "c5": "2026-12-24",
    }
    for n, (case_id, deadline) in enumerate(deadlines.items()):
        case = new_case(case_id, f"LB-AAA{'ACDEF'[n]}A", f"NGO-{n}", at=NOW + timedelta(minutes=n))
        await add(repo, vault, referred(case, deadline, deadline is not None))
    await add(repo, vault, new_case("c0", "LB-CCCCC", "NGO-X0"))  # never referred
    # A case written before the field existed counts as one without a deadline.
    await add(repo, vault, new_case("c9", "LB-CCCCD", "NGO-X9"))
    await mongo[database_name]["cases"].update_one(
        {"_id": "c9"}, {"$unset": {"filing_deadline": 1}}
    )
    by_deadline = CaseFilters(sort=CaseSort.DEADLINE)
    ids: list[list[str]] = []
    cursor = None
    for _ in range(4):
        page = await repo.page("org-a", by_deadline, cursor, 2)
        ids.append([c.id for c in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids == [["c3", "c4"], ["c2", "c5"], ["c0", "c1"], ["c9"]]
    # Pages that cross from the dated cases into the undated ones.
    first = await repo.page("org-a", by_deadline, None, 3)
    second = await repo.page("org-a", by_deadline, first.next_cursor, 3)
    assert [c.id for c in first.items] == ["c3", "c4", "c2"]
    assert [c.id for c in second.items] == ["c5", "c0", "c1"]
    assert [c.deadline for c in second.items] == [date(2026, 12, 24), None, None]
    third = await repo.page("org-a", by_deadline, second.next_cursor, 3)
    assert ([c.id for c in third.items], third.next_cursor) == (["c9"], None)
    # Filters still apply in this order.
    referred_only = CaseFilters(status="referred", sort=CaseSort.DEADLINE)
    page = await repo.page("org-a", referred_only, None, 10)
    assert [c.id for c in page.items] == ["c3", "c4", "c2", "c5", "c1"]


async def test_a_cursor_of_one_sort_is_refused_by_the_other(
    repo: MongoCaseRepository, vault: KeyVault
) -> None:
    for n in range(3):
        await add(repo, vault, new_case(f"c{n}", f"LB-AAA{'ACD'[n]}A", f"NGO-{n}"))
    newest = await repo.page("org-a", CaseFilters(), None, 1)
    by_deadline = await repo.page("org-a", CaseFilters(sort=CaseSort.DEADLINE), None, 1)
    assert newest.next_cursor is not None
    assert by_deadline.next_cursor is not None
    with pytest.raises(CursorError, match="sort=submitted"):
        await repo.page("org-a", CaseFilters(sort=CaseSort.DEADLINE), newest.next_cursor, 1)
    with pytest.raises(CursorError, match="sort=deadline"):
        await repo.page("org-a", CaseFilters(), by_deadline.next_cursor, 1)
