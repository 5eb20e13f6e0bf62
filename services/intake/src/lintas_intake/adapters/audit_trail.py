"""The audit trail: every read or change of a case's personal data, in a keyed chain.

Entries are appended to `lintas_shared.audit_chain` (HMAC-SHA256 with `LINTAS_AUDIT_KEY`,
which the database does not hold, and a signed checkpoint of the head in the key vault's
database), so changing, rewriting or deleting entries, the newest included, is found by
`verify`. Entries never hold personal data: which organisation, which person (a
pseudonymous id, when a person acted through the console), when, which case, which
fields, why.

Entries written before the chain was keyed (no `v`, an unkeyed `hash`) are still
checked with that hash and counted apart as legacy (`ChainReport.legacy_entries`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lintas_shared.audit_chain import Anchor, AuditChain, ChainReport
from lintas_shared.mongo import Document
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lintas_intake.domain.organisation import Organisation

#: The chain's name (covered by every MAC; the checkpoint's `_id`).
CHAIN = "intake"
_LEGACY_CONTENT = (
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


def legacy_entry_hash(entry: Mapping[str, Any]) -> str:
    """The unkeyed hash of an entry written before the chain was keyed."""
    content = {k: entry.get(k) for k in _LEGACY_CONTENT}
    # Covered only when set: entries written before persons existed keep their hashes.
    if entry.get("person_id") is not None:
        content["person_id"] = entry["person_id"]
    return hashlib.sha256(
        json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


class AuditTrail:
    """Intake's append-only, keyed audit chain in MongoDB."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        checkpoints: AsyncCollection[Document],
        key: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._collection = collection
        self._clock = clock
        self.chain = AuditChain(CHAIN, collection, checkpoints, key, legacy_hash=legacy_entry_hash)

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
        """Append one entry; `person_id` when a person acted, None for an organisation's
        API key."""
        await self.chain.append(
            {
                "at": self._clock().isoformat(),
                "organisation_id": caller.id,
                "organisation_kind": caller.kind.value,
                "person_id": person_id,
                "case_id": case_id,
                "action": action,
                "fields": list(fields),
                "reason": reason,
            }
        )

    async def for_case(self, case_id: str) -> list[Document]:
        """Every entry about one case, in order."""
        return [
            d async for d in self._collection.find({"case_id": case_id}).sort([("_id", ASCENDING)])
        ]

    async def verify(self, anchors: Sequence[Anchor] = ()) -> ChainReport:
        """Walk the chain from the start and check it against its signed checkpoint."""
        return await self.chain.verify(anchors)
