"""Opt-out state per phone (by notify's look-up hash), with the events a change announces.

A worker's STOP applies to her phone, so to all her cases, and to a case of that phone
submitted later. The record goes with the phone's last case (`forget`, at erasure).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import CoalescingReader, Document
from lintas_shared.outbox import OUTBOX_FIELD, entry_event
from lintas_shared.unit_of_work import (
    OUTBOX_SINCE_FIELD,
    VERSION_FIELD,
    Decision,
    DocumentNotFoundError,
    DuplicateDocumentError,
    MongoVersionedDocuments,
    OnCommit,
    Outgoing,
    UnitOfWork,
    VersionedDocuments,
)
from pymongo.asynchronous.collection import AsyncCollection

from lintas_notify.domain.preference import Preference


def erased_front(entries: Sequence[Document], case_id: str) -> list[Document]:
    """The outbox entries an erasure of `case_id` removes: its announcements at the front
    of the outbox, up to the first entry of another case (which stays, and so do the
    entries behind it: an outbox is emptied from the front only)."""
    front = []
    for entry in entries:
        if entry_event(entry).subject != case_id:
            break
        front.append(entry)
    return front


class PreferenceCodec:
    """A `Preference` <-> the fields of its document (`_id` = the phone's hash)."""

    def id_of(self, aggregate: Preference) -> str:
        """The phone's hash."""
        return aggregate.phone_hash

    async def encode(self, aggregate: Preference) -> Document:
        """The document's own fields."""
        return {
            "opted_out": aggregate.opted_out,
            "changed_at": aggregate.changed_at,
            "channel": aggregate.channel,
        }

    async def decode(self, doc: Document) -> Preference:
        """The preference a stored document holds."""
        return Preference(doc["_id"], bool(doc["opted_out"]), doc["changed_at"], doc["channel"])


def _first_version() -> int:
    # 2**52 at most: a version stays exact wherever it is read as a double.
    return secrets.randbelow(2**52) + 1


class MongoPreferences:
    """`preferences`: one document per phone hash: opted out or not, since when, how."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_commit: OnCommit | None = None,
        *,
        documents: VersionedDocuments | None = None,
    ) -> None:
        self._collection = collection
        # A batch's sends ask side by side: one query for them all.
        self._opt_outs = CoalescingReader(collection, {"opted_out": 1})
        #: The versioned documents the unit of work changes and the relay publishes.
        self.documents: VersionedDocuments = documents or MongoVersionedDocuments(collection)
        self._work = self._unit_of_work(on_commit)

    def _unit_of_work(self, on_commit: OnCommit | None) -> UnitOfWork[Preference]:
        # A record is deleted at erasure (`forget`) and made again if the phone comes
        # back: it starts at a random version, never at the one a change still in flight
        # was decided on.
        return UnitOfWork(
            self.documents, PreferenceCodec(), on_commit=on_commit, first_version=_first_version
        )

    def on_commit(self, hook: OnCommit) -> None:
        """Wake the outbox relay (its `on_commit`) after each change with events."""
        self._work = self._unit_of_work(hook)

    async def ensure_indexes(self) -> None:
        """The outbox time index the relay's search reads; records of the previous
        version get their `version` (idempotent)."""
        if isinstance(self.documents, MongoVersionedDocuments):
            await self.documents.ensure_indexes()
        await self._collection.update_many(
            {VERSION_FIELD: {"$exists": False}}, {"$set": {VERSION_FIELD: 1}}
        )

    async def is_opted_out(self, phone_hash: str) -> bool:
        """Whether this phone asked for no more SMS."""
        doc = await self._opt_outs.find(phone_hash)
        return bool(doc and doc.get("opted_out"))

    async def forget(self, phone_hash: str) -> None:
        """Erasure of the phone's last case: drop its record, announcements and all."""
        await self._collection.delete_one({"_id": phone_hash})

    async def forget_case(self, phone_hash: str, case_id: str) -> None:
        """Erasure of one of the phone's cases: its announcements not yet relayed go
        (intake ignores news of an erased case), the phone's record stays for the others.

        The relay's `clear_published` relies on an outbox being only appended to and only
        emptied from the front, so only a run of the case's announcements at the front
        is removed, each by a conditional update that finds it still first. One behind
        another case's announcement stays where it is: it names the case and the
        preference only, and the relay publishes and removes it within moments. An
        outbox left empty loses its `outbox_since`.
        """
        doc = await self._collection.find_one({"_id": phone_hash}, {OUTBOX_FIELD: 1})
        entries = [] if doc is None else list(doc.get(OUTBOX_FIELD) or [])
        for entry in erased_front(entries, case_id):
            # Whole values: FerretDB v1's $pull matches no conditions on sub-fields.
            result = await self._collection.update_one(
                {"_id": phone_hash, f"{OUTBOX_FIELD}.0.id": entry["id"]},
                {"$pull": {OUTBOX_FIELD: entry}},
            )
            if result.matched_count == 0:
                break  # a relay removed it meanwhile (and maybe more): nothing to undo
        if entries:
            await self._collection.update_one(
                {"_id": phone_hash, f"{OUTBOX_FIELD}.0": {"$exists": False}},
                {"$unset": {OUTBOX_SINCE_FIELD: ""}},
            )

    async def change(
        self,
        phone_hash: str,
        opted_out: bool,
        at: datetime,
        channel: str,
        events: Sequence[tuple[str, CloudEvent]] = (),
    ) -> bool:
        """Apply a change made at `at` through the unit of work, with the events that
        announce it; True if it flipped the state (`Preference.change`: the latest wins).
        A phone never seen starts opted in: a first opt-in changes nothing."""
        outgoing = [Outgoing(topic, event) for topic, event in events]

        def decide(current: Preference) -> Decision[Preference] | None:
            changed = current.change(opted_out, at, channel)
            return None if changed is None else Decision(changed, outgoing)

        for _ in range(2):
            try:
                return (await self._work.change(phone_hash, decide)).changed
            except DocumentNotFoundError:
                pass
            try:
                await self._work.add(
                    Preference(phone_hash, opted_out, at, channel),
                    outgoing if opted_out else (),
                )
            except DuplicateDocumentError:
                continue  # another writer made it first: change that one
            return opted_out
        return False
