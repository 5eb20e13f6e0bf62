"""Organisations and their hashed API keys in MongoDB."""

from __future__ import annotations

from datetime import UTC, datetime

from lintas_shared.mongo import Document
from lintas_shared.security import hash_api_key
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_intake.domain.organisation import Organisation, OrganisationKind


class MongoOrganisationDirectory:
    """Finds the organisation behind an API key; keys are only ever stored hashed."""

    def __init__(self, collection: AsyncCollection[Document], pepper: str) -> None:
        self._collection = collection
        self._pepper = pepper

    async def ensure_indexes(self) -> None:
        """Key hashes are unique across organisations."""
        await self._collection.create_index(
            [("api_key_hashes", ASCENDING)], unique=True, sparse=True, name="api_key_hash_unique"
        )

    async def by_api_key(self, api_key: str) -> Organisation | None:
        """The organisation holding this key, or None for an unknown or revoked key."""
        doc = await self._collection.find_one(
            {"api_key_hashes": hash_api_key(api_key, self._pepper)}
        )
        if doc is None:
            return None
        return Organisation(
            id=doc["_id"],
            name=doc["name"],
            kind=OrganisationKind(doc["kind"]),
            country=doc["country"],
        )

    async def upsert(self, organisation: Organisation, api_keys: list[str]) -> None:
        """Create or replace an organisation with exactly these API keys."""
        await self._collection.update_one(
            {"_id": organisation.id},
            {
                "$set": {
                    "name": organisation.name,
                    "kind": organisation.kind.value,
                    "country": organisation.country,
                    "api_key_hashes": [hash_api_key(k, self._pepper) for k in api_keys],
                    "updated_at": datetime.now(UTC),
                }
            },
            upsert=True,
        )
