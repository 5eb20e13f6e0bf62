"""Who is behind an API key, on the real store: an instance remembers it a few seconds
(`remember_seconds`), the operator's tool reads the store each time."""

from __future__ import annotations

import pytest
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.clocks import SteppedClock

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"
REMEMBERED = 5.0


def directories(
    mongo: AsyncMongoClient[Document], database_name: str, clock: SteppedClock
) -> tuple[MongoOrganisationDirectory, MongoOrganisationDirectory]:
    """(a service instance's, the operator tool's) directory over one collection."""
    collection = mongo[database_name]["organisations"]
    service = MongoOrganisationDirectory(
        collection, PEPPER, remember_seconds=REMEMBERED, clock=clock
    )
    return service, MongoOrganisationDirectory(collection, PEPPER)


def ngo(name: str) -> Organisation:
    return Organisation(f"org-{name}", name, OrganisationKind.NGO, "ID")


async def test_a_key_revoked_by_the_tool_is_refused_once_the_instance_forgets_it(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    clock = SteppedClock()
    service, tool = directories(mongo, database_name, clock)
    await tool.ensure_indexes()
    key_id, key = await tool.create(ngo("desbumi"))
    found = await service.by_api_key(key)
    assert found is not None
    assert found.id == "org-desbumi"
    await tool.revoke_key("org-desbumi", key_id)
    assert await tool.by_api_key(key) is None  # the store refuses it now
    still = await service.by_api_key(key)  # remembered, no read
    assert still is not None
    assert still.id == "org-desbumi"
    clock.now += REMEMBERED
    assert await service.by_api_key(key) is None


async def test_a_key_revoked_through_the_instance_is_refused_there_at_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    service, _ = directories(mongo, database_name, SteppedClock())
    key_id, key = await service.create(ngo("kabar"))
    assert await service.by_api_key(key) is not None
    await service.revoke_key("org-kabar", key_id)
    assert await service.by_api_key(key) is None


async def test_an_unknown_key_is_not_remembered_so_a_new_key_works_at_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    service, tool = directories(mongo, database_name, SteppedClock())
    assert await service.by_api_key("key-not-yet") is None
    await tool.upsert(ngo("pantau"), ["key-not-yet"])
    found = await service.by_api_key("key-not-yet")
    assert found is not None
    assert found.id == "org-pantau"


async def test_an_organisation_by_id_is_remembered_as_long(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    clock = SteppedClock()
    service, tool = directories(mongo, database_name, clock)
    await tool.create(ngo("serikat"))
    assert await service.get("org-serikat") is not None
    await mongo[database_name]["organisations"].delete_one({"_id": "org-serikat"})
    assert await service.get("org-serikat") is not None
    clock.now += REMEMBERED
    assert await service.get("org-serikat") is None
