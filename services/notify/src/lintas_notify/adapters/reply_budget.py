"""How many answers one phone's inbound SMS have had in the current window.

Each answer is an SMS Lintas pays for, sent to whichever number wrote: a number (or a
gateway faking one) that writes again and again must not cost without bound. So one
phone gets at most `limit` answers in each fixed window (a worker asking STATUS a few
times an hour is well under it); what it sends beyond is still acted on (STOP stops)
but answered no more.

One document per phone and window, `_id` "<phone hash>#<window number>", holding the
ids of the replies it was allowed, in order. A reply is allowed if its id is among the
first `limit`: a retried webhook finds its reply's id again and keeps its answer, and
two instances adding at once both land (`$addToSet`) and agree on the order. A full
window is not written to, so a flood adds nothing. The previous window's document of
the phone is deleted when a new one starts, and expired ones at start-up: nothing is
kept much longer than a window.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection


class MongoReplyBudget:
    """At most `limit` answers to one phone in each window of `window`."""

    def __init__(
        self, collection: AsyncCollection[Document], *, limit: int, window: timedelta
    ) -> None:
        if limit < 1 or window <= timedelta(0):
            raise ValueError("a reply budget needs a limit of at least 1 and a window")
        self._collection = collection
        self.limit = limit
        self.window = window

    async def ensure_indexes(self) -> None:
        """Drop the windows that have ended (documents of phones that wrote no more)."""
        await self._collection.delete_many({"expires_at": {"$lte": datetime.now(UTC)}})

    async def forget(self, phone_hash: str) -> None:
        """Erasure of the phone's last case: its windows go (their ids hold its hash)."""
        await self._collection.delete_many({"_id": {"$regex": f"^{re.escape(phone_hash)}#"}})

    async def allow(self, phone_hash: str, reply_id: str, now: datetime) -> bool:
        """Whether the reply `reply_id` to this phone may be sent (it is counted if so)."""
        number = int(now.timestamp() // self.window.total_seconds())
        doc_id = f"{phone_hash}#{number}"
        doc = await self._collection.find_one({"_id": doc_id})
        if doc is None:
            await self._collection.delete_one({"_id": f"{phone_hash}#{number - 1}"})
        else:
            if reply_id in doc["replies"]:
                return bool(doc["replies"].index(reply_id) < self.limit)
            if len(doc["replies"]) >= self.limit:
                return False
        ends = datetime.fromtimestamp((number + 1) * self.window.total_seconds(), UTC)
        await self._collection.update_one(
            {"_id": doc_id},
            {"$addToSet": {"replies": reply_id}, "$set": {"expires_at": ends}},
            upsert=True,
        )
        after = await self._collection.find_one({"_id": doc_id})
        return after is not None and after["replies"].index(reply_id) < self.limit
