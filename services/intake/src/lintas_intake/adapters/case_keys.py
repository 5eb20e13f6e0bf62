"""The case key vault as intake uses it: new cases' keys made ahead, many to a vault
write, and a small in-process cache of the keys intake just used.

New cases: a case's id is drawn at random and its key stored in the vault before the
case itself (a case is never stored without its key). Drawn one at a time, that was one
`case_keys.insert` a submission (12% of intake's profile samples at 90 cases/s, where
requests rarely arrive together). `fresh` hands out ids whose keys were stored ahead, up
to `ahead` of them in one `insert_many`, named as one batch (referral and notify read a
batch's keys together: `lintas_shared.key_cache`). A key handed out for a case whose insert was
definitely refused comes back (`give_back`); those never used are deleted at shutdown
(`discard_unused`). Left in the vault are the keys a crashed instance held unused (its
`ahead` and any given back), and the key of a submission whose insert failed without a
definite answer (the case may have been stored: its key is never handed out again):
random keys with no case of their id, under which nothing stored was sealed.

Reads: a case's key is read to seal or open its document on every change, and each read
was one `case_keys` query (five a case on the happy path). The keys this process created
or read, and those read with them (their batch), are kept a while
(`lintas_shared.key_cache`, as referral and notify keep theirs).

Erasure: `destroy` drops the key from this process's cache before the vault deletes it,
so this process never uses it again. Another intake instance may still hold it for up to
the cache's `ttl`; that is harmless, because an erased case's document no longer holds
anything sealed to open and nothing is sealed for it again (the codec seals nothing for
an erased case), and it stops after `ttl`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from lintas_shared.crypto import DataKey
from lintas_shared.ids import new_id
from lintas_shared.key_cache import DEFAULT_SIZE, BatchedKeySource, KeyCache
from lintas_shared.settings import DEFAULT_CASE_KEY_CACHE_SECONDS

#: New cases' keys stored ahead, in one vault write (the setting's default).
DEFAULT_AHEAD = 64


class KeyStore(BatchedKeySource, Protocol):
    """The vault's calls (`lintas_shared.crypto.KeyVault`)."""

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]: ...

    async def destroy(self, case_id: str) -> bool: ...

    async def destroy_many(self, case_ids: Sequence[str]) -> int: ...


class CachedCaseKeys:
    """`CaseKeys` over a vault: new cases' keys stored ahead, recent keys remembered."""

    def __init__(
        self,
        vault: KeyStore,
        *,
        ttl: float = DEFAULT_CASE_KEY_CACHE_SECONDS,
        size: int = DEFAULT_SIZE,
        ahead: int = DEFAULT_AHEAD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._vault = vault
        self._cache = KeyCache(vault, ttl=ttl, size=size, clock=clock)
        self._ahead = ahead
        #: Stored in the vault, handed to no case yet.
        self._ready: deque[DataKey] = deque()
        self._storing = asyncio.Lock()

    async def fresh(self, count: int) -> list[DataKey]:
        """`count` new cases' keys, each already in the vault under a new random case
        id (`DataKey.case_id`): the cases to store are to take these ids."""
        while len(self._ready) < count:
            async with self._storing:  # one vault write at a time; the others wait for it
                missing = count - len(self._ready)
                if missing > 0:
                    ids = [new_id() for _ in range(missing + self._ahead)]
                    self._ready.extend(await self._vault.create_many(ids))
        return [self._cache.remember(self._ready.popleft()) for _ in range(count)]

    def give_back(self, keys: Iterable[DataKey]) -> None:
        """Keys from `fresh` whose case was refused (no case was stored under their id)."""
        for key in keys:  # handed out first, next
            self._cache.forget(key.case_id)
            self._ready.appendleft(key)

    async def discard_unused(self) -> int:
        """Delete the keys stored ahead and never handed out (at shutdown)."""
        async with self._storing:  # after a vault write under way, not before it
            unused = [key.case_id for key in self._ready]
            self._ready.clear()
            return await self._vault.destroy_many(unused)

    async def get(self, case_id: str) -> DataKey:
        """The case's key, from the cache while fresh; CaseKeyMissingError once erased."""
        return await self._cache.get(case_id)

    async def destroy(self, case_id: str) -> bool:
        """Forget the key here first, then delete it for good."""
        self._cache.forget(case_id)
        return await self._vault.destroy(case_id)

    def forget(self, case_id: str) -> None:
        """Drop a key from the cache only (a case that was never stored)."""
        self._cache.forget(case_id)
