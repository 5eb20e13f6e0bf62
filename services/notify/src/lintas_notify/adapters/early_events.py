"""The previous version's store of events that arrived before their case.

Events that overtake their case's `submitted` event now wait inside the case's own
document (`MongoCaseProfiles.keep_waiting`). Data written before that lives in two
collections, `early_events` (one document per waiting event) and `early_events_by_case`;
`migrate` moves each such event into its case's document at start-up and drops the two
collections once empty (idempotent: a moved event is deleted, a repeated move is a no-op).
"""

from __future__ import annotations

from lintas_shared.envelope import CloudEvent
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_notify.ports import CaseProfileStore

log = get_logger(__name__)


class MongoEarlyEvents:
    """`early_events` and `early_events_by_case`, as the previous version left them."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def migrate(self, profiles: CaseProfileStore) -> int:
        """Move every waiting event into its case's document; how many were moved."""
        database, name = self._collection.database, self._collection.name
        if name not in await database.list_collection_names():
            return 0
        moved = 0
        async for doc in self._collection.find({}):
            event = CloudEvent.model_validate(doc["event"])
            state = await profiles.keep_waiting(doc["case_id"], event, doc["kept_at"])
            if state is not None:
                # Its case arrived before the move and was handled without it (a crash
                # between the two collections' writes in the previous version).
                log.warning("early event of a known case not replayed", type=event.type)
            await self._collection.delete_one({"_id": doc["_id"]})
            moved += 1
        await database.drop_collection(f"{name}_by_case")
        await database.drop_collection(name)
        return moved
