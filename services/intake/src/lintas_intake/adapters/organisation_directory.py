"""Organisations and their API keys in MongoDB; keys are only ever stored hashed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from lintas_shared.caller_cache import CallerCache
from lintas_shared.ids import new_id
from lintas_shared.mongo import Document
from lintas_shared.security import hash_api_key, new_api_key
from pymongo.asynchronous.collection import AsyncCollection

from lintas_intake.domain.organisation import Organisation, OrganisationKind


def _organisation(doc: Document) -> Organisation:
    return Organisation(
        id=doc["_id"],
        name=doc["name"],
        kind=OrganisationKind(doc["kind"]),
        country=doc["country"],
        languages=tuple(doc.get("languages", ())),
        claim_types=tuple(doc.get("claim_types", ())),
        capacity=doc.get("capacity"),
    )


#: Moved by every change of an organisation's key list: a revocation writes the list back
#: only as it read it.
KEYS_VERSION = "keys_version"
#: Reads and writes a revocation tries while other key changes keep coming first.
REVOKE_ATTEMPTS = 5


class MongoOrganisationDirectory:
    """Finds the organisation behind an API key; issues and revokes keys.

    `remember_seconds`: how long the organisation found behind a key, or by id for a
    person's token, is remembered (`lintas_shared.caller_cache`); 0, the default, reads
    the store each time (the operator tools)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        pepper: str,
        *,
        remember_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = collection
        self._pepper = pepper
        self._by_key: CallerCache[Organisation] = CallerCache(remember_seconds, clock=clock)
        self._by_id: CallerCache[Organisation] = CallerCache(remember_seconds, clock=clock)

    def hash(self, api_key: str) -> str:
        """The stored form of a key."""
        return hash_api_key(api_key, self._pepper)

    async def ensure_indexes(self) -> None:
        """Look-ups by key hash (dropping the unique index of the first release, which a
        key list with revoked keys outgrew)."""
        if "api_key_hash_unique" in await self._collection.index_information():
            await self._collection.drop_index("api_key_hash_unique")
        await self._collection.create_index("api_key_hashes", name="api_key_hashes")

    async def by_api_key(self, api_key: str) -> Organisation | None:
        """The organisation holding this key, or None for an unknown or revoked key."""
        digest = self.hash(api_key)

        async def find() -> Organisation | None:
            doc = await self._collection.find_one({"api_key_hashes": digest})
            return None if doc is None else _organisation(doc)

        return await self._by_key.get(digest, find)

    async def active_key_hashes(self, organisation_id: str) -> list[str]:
        """The hashes of an organisation's keys that are not revoked."""
        doc = await self._collection.find_one({"_id": organisation_id}, {"api_key_hashes": 1})
        return list((doc or {}).get("api_key_hashes", []))

    async def get(self, organisation_id: str) -> Organisation | None:
        """One organisation."""

        async def find() -> Organisation | None:
            doc = await self._collection.find_one({"_id": organisation_id})
            return None if doc is None else _organisation(doc)

        return await self._by_id.get(organisation_id, find)

    async def all(self) -> list[tuple[Organisation, list[Document]]]:
        """Every organisation with its keys' ids and dates (never the keys)."""
        return [
            (
                _organisation(d),
                [{k: v for k, v in key.items() if k != "hash"} for key in d.get("api_keys", [])],
            )
            async for d in self._collection.find({}).sort("name")
        ]

    async def upsert(self, organisation: Organisation, api_keys: list[str]) -> None:
        """Create or replace an organisation with exactly these API keys (demo seed)."""
        now = datetime.now(UTC)
        keys = [
            {"id": f"key-{i}", "hash": self.hash(k), "created_at": now, "revoked_at": None}
            for i, k in enumerate(api_keys, 1)
        ]
        await self._collection.update_one(
            {"_id": organisation.id},
            {
                "$set": {
                    **_fields(organisation),
                    "api_keys": keys,
                    "api_key_hashes": [k["hash"] for k in keys],
                    "updated_at": now,
                },
                "$inc": {KEYS_VERSION: 1},
            },
            upsert=True,
        )
        self._by_key.clear()  # its former keys, whichever they were
        self._by_id.forget(organisation.id)

    async def create(self, organisation: Organisation) -> tuple[str, str]:
        """A new organisation with a first key; returns (key id, the key, shown once)."""
        await self._collection.insert_one(
            {
                "_id": organisation.id,
                **_fields(organisation),
                "api_keys": [],
                "api_key_hashes": [],
                "created_at": datetime.now(UTC),
            }
        )
        return await self.issue_key(organisation.id)

    async def issue_key(self, organisation_id: str) -> tuple[str, str]:
        """Another key for an organisation; returns (key id, key)."""
        key, key_id = new_api_key(), f"key-{new_id()[:8]}"
        digest = self.hash(key)
        result = await self._collection.update_one(
            {"_id": organisation_id},
            {
                "$push": {
                    "api_keys": {
                        "id": key_id,
                        "hash": digest,
                        "created_at": datetime.now(UTC),
                        "revoked_at": None,
                    },
                    "api_key_hashes": digest,
                },
                "$inc": {KEYS_VERSION: 1},
            },
        )
        if result.matched_count != 1:
            raise KeyError(organisation_id)
        return key_id, key

    async def revoke_key(self, organisation_id: str, key_id: str) -> str:
        """Revoke one key: refused at once by this directory, by other instances once
        they forget it (`remember_seconds`); returns its hash (for other services'
        copies). The key list is written back only as read (`keys_version`): a key
        issued meanwhile is kept, and the revocation read again."""
        for _ in range(REVOKE_ATTEMPTS):
            doc = await self._collection.find_one({"_id": organisation_id})
            key = next((k for k in (doc or {}).get("api_keys", []) if k["id"] == key_id), None)
            if doc is None or key is None:
                raise KeyError(key_id)
            keys = [
                {**k, "revoked_at": k["revoked_at"] or datetime.now(UTC)}
                if k["id"] == key_id
                else k
                for k in doc["api_keys"]
            ]
            read = doc.get(KEYS_VERSION)
            # $pull of an exact value works on FerretDB v1 too.
            result = await self._collection.update_one(
                {
                    "_id": organisation_id,
                    KEYS_VERSION: read if read is not None else {"$exists": False},
                },
                {
                    "$set": {"api_keys": keys},
                    "$pull": {"api_key_hashes": key["hash"]},
                    "$inc": {KEYS_VERSION: 1},
                },
            )
            if result.matched_count == 1:
                self._by_key.forget(str(key["hash"]))
                return str(key["hash"])
        raise RuntimeError(f"the keys of {organisation_id} kept changing; revoke again")


def _fields(organisation: Organisation) -> Document:
    fields = asdict(organisation)
    fields.pop("id")
    fields["kind"] = organisation.kind.value
    fields["languages"] = list(organisation.languages)
    fields["claim_types"] = list(organisation.claim_types)
    return fields
