"""The audit trail of partner reads: every time a partner opened a case's personal data
(the referral view, or the content key of its sealed event), which are the actual
cross-border disclosures.

Who: the organisation, and the person (a pseudonymous id) when one acted through the
console; never a name or an email. Records are appended to a keyed chain
(`lintas_shared.audit_chain`, chain `referral`), verified with intake's by
`lintas audit verify`. Records written before the chain existed (random `_id`) are kept
and listed, and counted as unchained.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lintas_shared.audit_chain import Anchor, AuditChain, ChainReport
from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

#: The chain's name (covered by every MAC; the checkpoint's `_id`).
CHAIN = "referral"


class MongoAuditTrail:
    """Appends access records; never holds the personal data itself."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        checkpoints: AsyncCollection[Document],
        key: str,
    ) -> None:
        self._collection = collection
        self.chain = AuditChain(CHAIN, collection, checkpoints, key)

    async def record_access(
        self,
        *,
        case_id: str,
        referral_id: str,
        organisation_id: str,
        fields: Sequence[str],
        at: datetime,
        person_id: str | None = None,
    ) -> None:
        """Append one access record (`person_id` None: an organisation's API key)."""
        await self.chain.append(
            {
                "case_id": case_id,
                "referral_id": referral_id,
                "organisation_id": organisation_id,
                "person_id": person_id,
                "fields": list(fields),
                # A string: a stored datetime comes back cut to milliseconds, so the MAC
                # could not be checked again.
                "at": at.isoformat(),
            }
        )

    async def for_case(self, case_id: str) -> list[Document]:
        """The access records of a case, oldest first (records from before the chain,
        whose `at` is a stored date, come first)."""
        found = [doc async for doc in self._collection.find({"case_id": case_id})]

        def order(doc: Document) -> tuple[int, Any]:
            seq = doc.get("seq")
            return (1, seq) if isinstance(seq, int) else (0, doc["at"])

        return sorted(found, key=order)

    async def verify(self, anchors: Sequence[Anchor] = ()) -> ChainReport:
        """Walk the chain from the start and check it against its signed checkpoint."""
        return await self.chain.verify(anchors)
