"""A service's background loop (outbox relay, schedulers): one named asyncio task,
started once, cancelled and awaited on stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    """Runs `run()` as one task named `name`; `start` and `stop` are idempotent."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """Whether the task was started and not stopped since."""
        return self._task is not None

    def start(self) -> None:
        """Start the task in the running event loop, unless it runs already."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def cancel(self) -> None:
        """Ask the task to stop, without waiting (see `stop`)."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Cancel the task and wait until it has stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
