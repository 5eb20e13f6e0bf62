"""The audit trail: every read or change of a case's personal data, hash-chained.

Each entry carries the hash of the one before it, and its own hash over its content
and that link, so changing or deleting an entry breaks the chain at that point, which
`verify` finds. Entries never hold personal data: which organisation, which person
(a pseudonymous id, when a person acted through the console), when, which case, which
fields, why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lintas_shared.mongo import Document
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_intake.domain.organisation import Organisation

GENESIS = "0" * 64
_CONTENT = (
    "seq",
    "at",
    "organisation_id",
    "organisation_kind",
    "case_id",
    "action",
    "fields",
    "reason",
    "prev_hash",
)


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash of an entry's content and its link to the previous entry."""
    content = {k: entry.get(k) for k in _CONTENT}
    # Covered only when set: entries written before persons existed keep their hashes.
    if entry.get("person_id") is not None:
        content["person_id"] = entry["person_id"]
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the chain."""

    entries: int
    intact: bool
    first_broken_seq: int | None = None
    problem: str | None = None


class AuditTrail:
    """Append-only, hash-chained audit entries in MongoDB."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._collection = collection
        self._clock = clock
        # Where the chain ends: a hint only (appends by other processes move it on).
        self._head = collection.database[f"{collection.name}_head"]
        self._last_seq: int | None = None

    async def ensure_indexes(self) -> None:
        """Entries by case, for the admin listing."""
        await self._collection.create_index(
            [("case_id", ASCENDING), ("_id", ASCENDING)], name="by_case"
        )

    async def record(
        self,
        caller: Organisation,
        case_id: str,
        action: str,
        fields: Sequence[str],
        reason: str | None,
        *,
        person_id: str | None = None,
    ) -> None:
        """Append one entry (the sequence number as _id serialises concurrent appends);
        `person_id` when a person acted, None for an organisation's API key."""
        for _ in range(50):
            last = await self._tail()
            entry: dict[str, Any] = {
                "seq": 1 if last is None else last["seq"] + 1,
                "at": self._clock().isoformat(),
                "organisation_id": caller.id,
                "organisation_kind": caller.kind.value,
                "person_id": person_id,
                "case_id": case_id,
                "action": action,
                "fields": list(fields),
                "reason": reason,
                "prev_hash": GENESIS if last is None else last["hash"],
            }
            entry["hash"] = entry_hash(entry)
            try:
                await self._collection.insert_one({"_id": entry["seq"], **entry})
            except DuplicateKeyError:
                continue  # another append took this number: link to it instead
            self._last_seq = entry["seq"]
            await self._head.update_one(
                {"_id": "head"}, {"$max": {"seq": entry["seq"]}}, upsert=True
            )
            return
        raise RuntimeError("could not append to the audit trail")

    async def _tail(self) -> Document | None:
        """The last entry, found by `_id` from a hint and not by sorting: FerretDB v1
        would read the whole trail to sort it, on every append."""
        hint = self._last_seq
        if hint is None:
            head = await self._head.find_one({"_id": "head"})
            hint = 0 if head is None else int(head["seq"])
        last = await self._collection.find_one({"_id": hint}) if hint else None
        if hint and last is None:
            # The trail was cut below its recorded head (tampering): append after the
            # head, so the gap stays for `verify` to report instead of being filled in.
            found = await self._collection.find_one({}, sort=[("_id", DESCENDING)])
            last = {"seq": hint, "hash": GENESIS if found is None else found["hash"]}
        while True:
            following = await self._collection.find_one(
                {"_id": 1 if last is None else last["seq"] + 1}
            )
            if following is None:
                return last
            last = following

    async def for_case(self, case_id: str) -> list[Document]:
        """Every entry about one case, in order."""
        return [
            d async for d in self._collection.find({"case_id": case_id}).sort([("_id", ASCENDING)])
        ]

    async def verify(self) -> ChainReport:
        """Walk the chain from the start; report the first entry that does not hold."""
        expected_prev, expected_seq, count = GENESIS, 1, 0
        async for entry in self._collection.find({}).sort([("_id", ASCENDING)]):
            count += 1
            if entry["seq"] != expected_seq or entry["_id"] != expected_seq:
                return ChainReport(count, False, expected_seq, "an entry is missing")
            if entry["prev_hash"] != expected_prev:
                return ChainReport(count, False, entry["seq"], "link to previous entry broken")
            if entry_hash(entry) != entry["hash"]:
                return ChainReport(count, False, entry["seq"], "entry content was changed")
            expected_prev, expected_seq = entry["hash"], expected_seq + 1
        return ChainReport(count, True)
