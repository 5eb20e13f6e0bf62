"""People and sessions in the console's own MongoDB database."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_console.domain.people import PeopleError, Person, Role
from lintas_console.domain.sessions import Session


def _person(doc: Document) -> Person:
    return Person(
        id=doc["_id"],
        organisation_id=doc["organisation_id"],
        email=doc["email"],
        role=Role(doc["role"]),
        display_name=doc["display_name"],
        language=doc.get("language", "id"),
        password_hash=doc.get("password_hash"),
        totp_secret=doc.get("totp_secret"),
        disabled=bool(doc.get("disabled", False)),
        created_at=doc.get("created_at"),
    )


def _person_fields(person: Person) -> Document:
    fields: dict[str, Any] = asdict(person)
    fields.pop("id")
    fields["role"] = person.role.value
    return fields


class MongoPeopleStore:
    """The `people` collection: one document per person, the email unique."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """Look-ups by email, by organisation, and by one-time link."""
        await self._collection.create_index("email", unique=True, name="email_unique")
        await self._collection.create_index("organisation_id", name="organisation_id")
        await self._collection.create_index("link.hash", name="link_hash")

    async def add(self, person: Person) -> None:
        """Store a new person; the unique index refuses a taken email."""
        try:
            await self._collection.insert_one({"_id": person.id, **_person_fields(person)})
        except DuplicateKeyError:
            raise PeopleError("email already in use") from None

    async def get(self, person_id: str) -> Person | None:
        """One person."""
        doc = await self._collection.find_one({"_id": person_id})
        return None if doc is None else _person(doc)

    async def by_email(self, email: str) -> Person | None:
        """The person with this normalised email."""
        doc = await self._collection.find_one({"email": email})
        return None if doc is None else _person(doc)

    async def of_organisation(self, organisation_id: str) -> list[Person]:
        """Everyone in one organisation, by name."""
        cursor = self._collection.find({"organisation_id": organisation_id}).sort("display_name")
        return [_person(doc) async for doc in cursor]

    async def names(self, person_ids: list[str]) -> dict[str, str]:
        """Display names of these people."""
        if not person_ids:
            return {}
        cursor = self._collection.find({"_id": {"$in": person_ids}}, {"display_name": 1})
        return {doc["_id"]: doc["display_name"] async for doc in cursor}

    async def save(self, person: Person) -> None:
        """Replace a person's fields (the one-time link stays as it is)."""
        await self._collection.update_one({"_id": person.id}, {"$set": _person_fields(person)})

    async def set_link(self, person_id: str, token_hash: str, expires_at: datetime) -> None:
        """Remember one live link per person."""
        await self._collection.update_one(
            {"_id": person_id}, {"$set": {"link": {"hash": token_hash, "expires_at": expires_at}}}
        )

    async def use_link(self, token_hash: str, now: datetime) -> Person | None:
        """Take the link away in the same write that finds it: a link works once."""
        doc = await self._collection.find_one_and_update(
            {"link.hash": token_hash, "link.expires_at": {"$gt": now}},
            {"$unset": {"link": ""}},
        )
        return None if doc is None else _person(doc)


def _session(doc: Document) -> Session:
    return Session(
        key=doc["_id"],
        person_id=doc["person_id"],
        csrf_token=doc["csrf_token"],
        created_at=doc["created_at"],
        last_seen_at=doc["last_seen_at"],
        second_factor_done=doc["second_factor_done"],
        language=doc["language"],
        pending_totp_secret=doc.get("pending_totp_secret"),
    )


class MongoSessionStore:
    """The `sessions` collection, keyed by the hash of the cookie's id."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """Sessions of a person (ended together when they are disabled)."""
        await self._collection.create_index("person_id", name="person_id")

    async def add(self, session: Session) -> None:
        """Store a new session."""
        fields = asdict(session)
        await self._collection.insert_one({"_id": fields.pop("key"), **fields})

    async def get(self, key: str) -> Session | None:
        """One session."""
        doc = await self._collection.find_one({"_id": key})
        return None if doc is None else _session(doc)

    async def save(self, session: Session) -> None:
        """Replace a session's fields."""
        fields = asdict(session)
        await self._collection.update_one({"_id": fields.pop("key")}, {"$set": fields})

    async def remove(self, key: str) -> None:
        """Forget one session."""
        await self._collection.delete_one({"_id": key})

    async def remove_person(self, person_id: str) -> None:
        """Forget every session of a person."""
        await self._collection.delete_many({"person_id": person_id})
