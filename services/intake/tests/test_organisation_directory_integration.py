"""Who is behind an API key, on the real store: an instance remembers it a few seconds
(`remember_seconds`), the operator's tool reads the store each time."""

from __future__ import annotations

from typing import Any

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


class IssuingOnRead:
    """The organisations collection, where another operator issues a key right after a
    revocation first reads the organisation (before it writes)."""

    def __init__(self, collection: Any, other: MongoOrganisationDirectory, org_id: str) -> None:
        self._collection, self._other, self._org_id = collection, other, org_id
        self.issued: tuple[str, str] | None = None

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        doc = await self._collection.find_one(*args, **kwargs)
        if self.issued is None:
            self.issued = await self._other.issue_key(self._org_id)
        return doc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


async def test_a_key_issued_while_another_is_revoked_is_kept(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["organisations"]
    tool = MongoOrganisationDirectory(collection, PEPPER)
    old_id, old_key = await tool.create(ngo("migrant-care"))
    racing = IssuingOnRead(collection, tool, "org-migrant-care")
    revoking = MongoOrganisationDirectory(racing, PEPPER)  # type: ignore[arg-type]

    await revoking.revoke_key("org-migrant-care", old_id)

    assert racing.issued is not None
    new_id, new_key = racing.issued
    stored = await collection.find_one({"_id": "org-migrant-care"})
    assert stored is not None
    revoked = {k["id"]: k["revoked_at"] is not None for k in stored["api_keys"]}
    assert revoked == {old_id: True, new_id: False}  # the new key's entry not lost
    assert await tool.by_api_key(old_key) is None
    found = await tool.by_api_key(new_key)
    assert found is not None
    assert found.id == "org-migrant-care"
