"""Per-case locks inside one process.

Every read-change-write of a case in this process (the consumer, the partner API, the
scheduler, the outbox relay) is serialised here, so they queue instead of failing each
other's version checks and retrying. Across processes the version check in the write's
filter (`lintas_shared.mongo.update_by_id`) decides, atomically.
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
