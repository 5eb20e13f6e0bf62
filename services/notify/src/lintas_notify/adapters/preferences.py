"""Opt-out state per phone (by notify's look-up hash), with the events a change announces.

A worker's STOP applies to her phone, so to all her cases, and to a case of that phone
submitted later. The record goes with the phone's last case (`forget`, at erasure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from lintas_shared.case_locks import CaseLocks
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document, update_by_id
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class MongoPreferences:
    """`preferences`: one document per phone hash: opted out or not, since when, how."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
        locks: CaseLocks | None = None,
    ) -> None:
        self._collection = collection
        self._on_write = on_write
        # FerretDB v1 applies an update as read-modify-write: the preference's lock is
        # also taken by the outbox relay around its $pull, so neither loses the other.
        self.locks = locks or CaseLocks()

    async def is_opted_out(self, phone_hash: str) -> bool:
        """Whether this phone asked for no more SMS."""
        doc = await self._collection.find_one({"_id": phone_hash}, {"opted_out": 1})
        return bool(doc and doc.get("opted_out"))

    async def forget(self, phone_hash: str) -> None:
        """Erasure of the phone's last case: drop its record, announcements and all."""
        async with self.locks.hold(phone_hash):
            await self._collection.delete_one({"_id": phone_hash})

    async def forget_case(self, phone_hash: str, case_id: str) -> None:
        """Erasure of one of the phone's cases: its announcements not yet relayed go
        (intake ignores news of an erased case), the phone's record stays for the others."""
        async with self.locks.hold(phone_hash):
            doc = await self._collection.find_one({"_id": phone_hash}, {OUTBOX_FIELD: 1})
            entries = [] if doc is None else list(doc.get(OUTBOX_FIELD) or [])
            kept = [e for e in entries if e.get("event", {}).get("subject") != case_id]
            if len(kept) < len(entries):
                await update_by_id(
                    self._collection,
                    phone_hash,
                    {"$set": {OUTBOX_FIELD: kept}},
                    where={OUTBOX_FIELD: entries},
                )

    async def change(
        self,
        phone_hash: str,
        opted_out: bool,
        at: datetime,
        channel: str,
        events: Sequence[tuple[str, CloudEvent]] = (),
    ) -> bool:
        """Apply a change made at `at`; True if it flipped the state.

        An older change than the one stored is ignored, so events from intake and SMS
        keywords can arrive in any order and the latest wins.
        """
        async with self.locks.hold(phone_hash):
            return await self._change(phone_hash, opted_out, at, channel, events)

    async def _change(
        self,
        phone_hash: str,
        opted_out: bool,
        at: datetime,
        channel: str,
        events: Sequence[tuple[str, CloudEvent]],
    ) -> bool:
        entries = [outbox_entry(topic, event) for topic, event in events]
        fields = {"opted_out": opted_out, "changed_at": at, "channel": channel}
        if await update_by_id(
            self._collection,
            phone_hash,
            {"$set": fields, "$push": {OUTBOX_FIELD: {"$each": entries}}},
            where={"changed_at": {"$lt": at}, "opted_out": {"$ne": opted_out}},
        ):
            self._on_write(phone_hash)
            return True
        if await self._collection.find_one({"_id": phone_hash}, {"_id": 1}) is not None:
            return False
        try:
            await self._collection.insert_one(
                {"_id": phone_hash, **fields, OUTBOX_FIELD: entries if opted_out else []}
            )
        except DuplicateKeyError:
            return False
        self._on_write(phone_hash)
        # A first opt-in changes nothing: everyone starts opted in.
        return opted_out
