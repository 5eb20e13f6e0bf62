"""Delivery receipts that arrived before the `sent` record of their message.

An SMS centre (or a gateway's status callback) can report delivery before our `sent`
record, which holds its message id, is written: the receipt can overtake the response
to the submit. Such a receipt is kept here, keyed by `_id` = provider and provider
message id (it names no message of ours yet, so it cannot wait inside one), applied when the
record is written, or by the dispatcher's next pass if notify stopped in between. The
collection holds only receipts still waiting, so it stays small; no personal data.
"""

from __future__ import annotations

from datetime import datetime

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_notify.ports import provider_key


class MongoEarlyReceipts:
    """`early_receipts`: one document per receipt waiting for its message."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def keep(
        self,
        provider: str,
        provider_message_id: str,
        status: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        """Keep a final status (a later report for the same id replaces it)."""
        key = provider_key(provider, provider_message_id)
        doc = {
            "_id": key,
            "provider": provider,
            "provider_message_id": provider_message_id,
            "status": status,
            "reason": reason,
            "received_at": now,
        }
        await self._collection.replace_one({"_id": key}, doc, upsert=True)

    async def get(self, provider: str, provider_message_id: str) -> Document | None:
        """The receipt kept for this message id, if any."""
        return await self._collection.find_one({"_id": provider_key(provider, provider_message_id)})

    async def drop(self, provider: str, provider_message_id: str) -> None:
        """The receipt was applied (or expired): forget it."""
        await self._collection.delete_one({"_id": provider_key(provider, provider_message_id)})

    async def waiting(self, limit: int = 100) -> list[Document]:
        """Receipts still waiting (the dispatcher's pass; the collection is small)."""
        return [doc async for doc in self._collection.find({}).limit(limit)]
