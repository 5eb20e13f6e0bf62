"""The previous version's store of events that arrived before their case.

Events that overtake their case's `submitted` event now wait inside the case's own
document (`MongoCaseProfiles.keep_waiting`). Data written before that lives in two
collections, `early_events` (one document per waiting event) and `early_events_by_case`;
`migrate` moves each such event into its case's document at start-up and drops the two
collections once empty (idempotent: a moved event is deleted, a repeated move is a no-op).
An event whose case is known by then (its `submitted` event was handled without it: an
instance of the previous version still running, or a crash between the previous
version's two writes) is handled now, through the handlers (idempotent), not dropped.
An upgrade stops every instance of the previous version first (see the README).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lintas_shared.envelope import CloudEvent
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from pymongo.asynchronous.collection import AsyncCollection

from lintas_notify.domain.profile import CaseProfile
from lintas_notify.ports import CaseProfileStore

log = get_logger(__name__)


class MongoEarlyEvents:
    """`early_events` and `early_events_by_case`, as the previous version left them."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection

    async def migrate(
        self, profiles: CaseProfileStore, replay: Callable[[CloudEvent], Awaitable[None]]
    ) -> int:
        """Move every waiting event into its case's document, or hand it to `replay` (the
        handlers) when its case is known by now; how many were moved or handled. An event
        whose handling failed stays, and the collections with it, for the next start."""
        database, name = self._collection.database, self._collection.name
        if name not in await database.list_collection_names():
            return 0
        moved = failed = 0
        async for doc in self._collection.find({}):
            event = CloudEvent.model_validate(doc["event"])
            state = await profiles.keep_waiting(doc["case_id"], event, doc["kept_at"])
            if isinstance(state, CaseProfile):
                # Its case arrived before the move and was handled without it (an old
                # instance still running, or a crash between the previous version's two
                # writes): handle it now, as its consumer would have.
                try:
                    await replay(event)
                except Exception as exc:
                    failed += 1
                    log.warning(
                        "early event of a known case not handled yet; kept for the next start",
                        type=event.type,
                        error=type(exc).__name__,
                    )
                    continue
                log.info("early event of a known case handled at start", type=event.type)
            await self._collection.delete_one({"_id": doc["_id"]})
            moved += 1
        if not failed:
            await database.drop_collection(f"{name}_by_case")
            await database.drop_collection(name)
        return moved
