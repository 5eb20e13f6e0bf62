"""The scheduler: a background loop that runs what the stored schedule says is due.

Nothing is kept in memory timers: each pass asks the store what is due (offers to
expire, reminders to send), so a restart loses nothing and the schedule survives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from lintas_shared.background import BackgroundTask
from lintas_shared.logging import get_logger

log = get_logger(__name__)
Job = Callable[[], Awaitable[int]]


class Scheduler:
    """Runs `jobs` every `interval` seconds until stopped."""

    def __init__(self, jobs: Sequence[Job], interval: float) -> None:
        self._jobs = list(jobs)
        self._interval = interval
        self._loop = BackgroundTask("referral-scheduler", self._run)

    async def run_once(self) -> int:
        """One pass over every job; returns how much work was done."""
        done = 0
        for job in self._jobs:
            try:
                done += await job()
            except Exception as exc:
                # The store or broker may be away: the next pass tries again.
                log.warning(
                    "scheduled job failed",
                    job=getattr(job, "__name__", "job"),
                    error=type(exc).__name__,
                )
        return done

    async def _run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Start the loop in the background."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop the loop (a pass in flight is cancelled; its writes are atomic)."""
        await self._loop.stop()
