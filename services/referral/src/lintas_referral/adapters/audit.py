"""The audit trail: every read of a case's personal data, by whom and which fields.

Who: the organisation, and the person (a pseudonymous id) when one acted through the
console; never a name or an email."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from lintas_shared.ids import new_id
from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection


class MongoAuditTrail:
    """Appends access records; never holds the personal data itself."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

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
        """Write one access record (`person_id` None: an organisation's API key)."""
        await self._collection.insert_one(
            {
                "_id": new_id(),
                "case_id": case_id,
                "referral_id": referral_id,
                "organisation_id": organisation_id,
                "person_id": person_id,
                "fields": list(fields),
                "at": at,
            }
        )

    async def for_case(self, case_id: str) -> list[Document]:
        """The access records of a case, oldest first."""
        cursor = self._collection.find({"case_id": case_id}).sort("at", 1)
        return [doc async for doc in cursor]
