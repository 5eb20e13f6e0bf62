"""MongoCaseRepository on the real MongoDB-protocol server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lintas_intake.adapters.case_repository import MongoCaseRepository
from lintas_intake.domain.case import Case, CaseStatus
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.handlers import (
    DuplicateExternalRefError,
    DuplicateReferenceError,
    case_submitted_event,
)
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from pymongo import AsyncMongoClient

from tests.support.fixtures import example_case, fixture_key

pytestmark = pytest.mark.integration
NOW = datetime(2026, 9, 16, 8, 0, tzinfo=UTC)


def new_case(
    case_id: str, reference: str, external_ref: str = "NGO-1", organisation_id: str = "org-a"
) -> Case:
    return Case(
        id=case_id,
        reference=reference,
        organisation_id=organisation_id,
        submission=CaseSubmission.model_validate(example_case(external_ref=external_ref)),
        submitted_at=NOW,
        updated_at=NOW,
    )


@pytest.fixture
async def repo(mongo: AsyncMongoClient[Document], database_name: str) -> MongoCaseRepository:
    repository = MongoCaseRepository(mongo[database_name]["cases"])
    await repository.ensure_indexes()
    return repository


async def test_case_and_its_event_are_stored_in_one_document(
    repo: MongoCaseRepository, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    case = new_case("c1", "LB-AAAAA")
    event = case_submitted_event(case, fixture_key("c1"), lambda phone: "hash")
    await repo.add(case, [event])

    raw = await mongo[database_name]["cases"].find_one({"_id": "c1"})
    assert raw is not None
    assert [entry["id"] for entry in raw[OUTBOX_FIELD]] == [event.id]
    loaded = await repo.get("c1")
    assert loaded == case
    assert loaded.submission == CaseSubmission.model_validate(example_case(external_ref="NGO-1"))


async def test_reads_are_scoped_to_the_owning_organisation(repo: MongoCaseRepository) -> None:
    await repo.add(new_case("c1", "LB-AAAAA"), [])
    assert await repo.get("c1", organisation_id="org-a") is not None
    assert await repo.get("c1", organisation_id="org-b") is None


async def test_external_ref_is_unique_per_organisation(repo: MongoCaseRepository) -> None:
    await repo.add(new_case("c1", "LB-AAAAA", "NGO-7"), [])
    with pytest.raises(DuplicateExternalRefError) as info:
        await repo.add(new_case("c2", "LB-CCCCC", "NGO-7"), [])
    assert info.value.existing_case_id == "c1"
    # Another organisation may use the same external_ref.
    await repo.add(new_case("c3", "LB-DDDDD", "NGO-7", organisation_id="org-b"), [])


async def test_reference_collision_is_reported_for_a_redraw(repo: MongoCaseRepository) -> None:
    await repo.add(new_case("c1", "LB-AAAAA", "NGO-1"), [])
    with pytest.raises(DuplicateReferenceError):
        await repo.add(new_case("c2", "LB-AAAAA", "NGO-2"), [])


async def test_save_refuses_a_stale_version(repo: MongoCaseRepository) -> None:
    case = new_case("c1", "LB-AAAAA")
    await repo.add(case, [])
    first = replace(case, status=CaseStatus.REFERRED, version=2)
    assert await repo.save(first, expected_version=1, events=[])
    stale = replace(case, status=CaseStatus.UNASSIGNED, version=2)
    assert not await repo.save(stale, expected_version=1, events=[])
    stored = await repo.get("c1")
    assert stored is not None
    assert stored.status is CaseStatus.REFERRED
