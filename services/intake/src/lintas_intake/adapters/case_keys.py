"""The case key vault with a small in-process cache of the keys intake just used.

A case's key is read to seal or open its document on every change, and each read was one
`case_keys` query (five a case on the happy path). The cache keeps the keys this process
created or read, for `ttl` seconds, at most `size` of them (least recently used go first).

Erasure: `destroy` drops the key from this process's cache before the vault deletes it,
so this process never uses it again. Another intake instance may still hold it for up to
`ttl` seconds; that is harmless, because an erased case's document no longer holds
anything sealed to open and nothing is sealed for it again (the codec seals nothing for
an erased case), and it stops after `ttl`. Keys the vault does not have (erased) are
never cached: the next read asks the vault again.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from lintas_shared.crypto import DataKey


class KeyStore(Protocol):
    """The vault's calls (`lintas_shared.crypto.KeyVault`)."""

    async def create(self, case_id: str) -> DataKey: ...

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]: ...

    async def get(self, case_id: str) -> DataKey: ...

    async def destroy(self, case_id: str) -> bool: ...


class CachedCaseKeys:
    """`CaseKeys` over a vault, remembering recent keys for a short while."""

    def __init__(
        self,
        vault: KeyStore,
        *,
        ttl: float = 30.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._vault = vault
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._keys: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()

    def _remember(self, key: DataKey) -> DataKey:
        self._keys[key.case_id] = (self._clock() + self._ttl, key)
        self._keys.move_to_end(key.case_id)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return key

    async def create(self, case_id: str) -> DataKey:
        """The case's key, created on first use (the vault's create is idempotent)."""
        return self._remember(await self._vault.create(case_id))

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]:
        """Many cases' keys in one vault write, remembered."""
        return [self._remember(key) for key in await self._vault.create_many(case_ids)]

    async def get(self, case_id: str) -> DataKey:
        """The case's key, from the cache while fresh; CaseKeyMissingError once erased."""
        known = self._keys.get(case_id)
        if known is not None:
            expires, key = known
            if expires > self._clock():
                self._keys.move_to_end(case_id)
                return key
            del self._keys[case_id]
        return self._remember(await self._vault.get(case_id))

    async def destroy(self, case_id: str) -> bool:
        """Forget the key here first, then delete it for good."""
        self._keys.pop(case_id, None)
        return await self._vault.destroy(case_id)

    def forget(self, case_id: str) -> None:
        """Drop a key from the cache only (a case that was never stored)."""
        self._keys.pop(case_id, None)
