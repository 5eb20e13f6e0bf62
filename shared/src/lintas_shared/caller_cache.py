"""Who is behind a credential, remembered by one instance for a few seconds.

Every request with an API key (or a person token naming an organisation) asked the store
who is behind it: one `find` a request, the only store command of a case's path that a
batch could not share. An instance now remembers a found caller for
`LINTAS_API_KEY_CACHE_SECONDS` (5 by default; 0 reads the store at every request).

What that costs: a key revoked by another process (the operator's tool) is still
accepted by an instance that found it less than that long before. The expiry counts
from when the read began, so nothing read before a revocation outlives it by more than
the setting; `lintas org revoke-key` waits that long before it answers, and so keeps
its promise that the key is refused from then on. A credential found to belong to no
one is never remembered: a key issued a moment ago works at once, and made-up keys
cannot fill the memory (the request guard limits them by address).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Callers one instance remembers at most (a bound, not a working set).
MAX_REMEMBERED = 10_000


class CallerCache(Generic[T]):
    """Found callers by credential (a key's hash, an organisation id), for `ttl` seconds,
    at most `size` of them, the least recently used first out."""

    def __init__(
        self,
        ttl: float,
        *,
        size: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._found: OrderedDict[str, tuple[float, T]] = OrderedDict()
        # Moved by every `forget` and `clear`: a read begun before one is not kept.
        self._forgotten = 0

    async def get(self, credential: str, find: Callable[[], Awaitable[T | None]]) -> T | None:
        """The caller behind `credential`: remembered while fresh, else `find()`'s."""
        if self._ttl <= 0:
            return await find()
        started, forgotten = self._clock(), self._forgotten
        known = self._found.get(credential)
        if known is not None:
            if known[0] > started:
                self._found.move_to_end(credential)
                return known[1]
            del self._found[credential]
        found = await find()
        if found is not None and forgotten == self._forgotten:
            self._found[credential] = (started + self._ttl, found)
            self._found.move_to_end(credential)
            while len(self._found) > self._size:
                self._found.popitem(last=False)
        return found

    def forget(self, credential: str) -> None:
        """Drop one credential (revoked through this instance: refused at once here,
        including by a read of it under way)."""
        self._forgotten += 1
        self._found.pop(credential, None)

    def clear(self) -> None:
        """Drop everything remembered."""
        self._forgotten += 1
        self._found.clear()
