"""Per-case locks inside one process.

On FerretDB a version check is a read by `_id` followed by a write by `_id` (see
`lintas_shared.mongo.update_by_id`; FerretDB v1 on its own even let two concurrent
conditional updates both match). The version check still guards against other
processes on MongoDB, but within this process every read-change-write of a case is
serialised here, so the consumer, the partner API, the scheduler and the outbox relay
never race each other on one case.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class CaseLocks:
    """One asyncio lock per case id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, case_id: str) -> AsyncIterator[None]:
        """Hold the case's lock for the block."""
        lock = self._locks.setdefault(case_id, asyncio.Lock())
        self._users[case_id] = self._users.get(case_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[case_id] -= 1
            if not self._users[case_id]:
                del self._users[case_id]
                del self._locks[case_id]
