"""Case keys as a service reads them: a key read is kept a few seconds, and with it the
keys stored in the same vault write.

Intake stores new cases' keys ahead, many in one write, and names them as one batch
(`KeyVault.create_many`): the cases submitted over the next seconds take those keys one
after another. So when referral or notify first reads one of them, it reads the whole
batch in one more query, and the next cases' keys are at hand: at two cases a second
that was one `case_keys.find` a case in each of them, now one every few dozen cases.

A key is kept for `ttl` seconds from the read that brought it (`LINTAS_CASE_KEY_CACHE_
SECONDS`), at most `size` of them (least recently used go first); 0 keeps nothing and
reads the vault every time, one key at a time. Keys the vault does not have (erased) are
never kept: the next read asks again.

Erasure: the vault deletes the key at once; a process that read it in the last `ttl`
seconds may still hold it that long. The service that hears of the erasure forgets it
(`forget`) and acts on nothing of the case afterwards; what the cache widens is the
window in which an event that came before the erasure, handled late, still opens the
case's data: up to `ttl` seconds instead of the read's milliseconds (README, Privacy).
What hands a case's data to a person (referral's partner API) asks the vault each time
(`current`): a request after the erasure is refused at once, on any instance.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.logging import get_logger
from lintas_shared.settings import DEFAULT_CASE_KEY_CACHE_SECONDS

log = get_logger(__name__)
#: Keys kept at most (about 200 bytes each).
DEFAULT_SIZE = 10_000


class BatchedKeySource(Protocol):
    """The vault's reads (`lintas_shared.crypto.KeyVault`)."""

    async def get_in_batch(self, case_id: str) -> tuple[DataKey, str | None]:
        """The case's key and its batch; raises CaseKeyMissingError after erasure."""
        ...

    async def batch(self, batch_id: str) -> list[DataKey]:
        """The keys of one batch still in the vault."""
        ...


class KeyCache:
    """Reads case keys from the vault, keeping each one read (and its batch) a while."""

    def __init__(
        self,
        vault: BatchedKeySource,
        *,
        ttl: float = DEFAULT_CASE_KEY_CACHE_SECONDS,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._vault = vault
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._keys: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()
        #: Batches read (or being read) and until when: not read again meanwhile.
        self._batches: dict[str, float] = {}

    async def get(self, case_id: str) -> DataKey:
        """The case's key, kept or read; raises CaseKeyMissingError once it is erased."""
        now = self._clock()
        known = self._keys.get(case_id)
        if known is not None:
            if known[0] > now:
                self._keys.move_to_end(case_id)
                return known[1]
            del self._keys[case_id]
        key, batch = await self._vault.get_in_batch(case_id)
        if self._ttl <= 0:
            return key
        self.remember(key)
        if batch is not None and self._batches.get(batch, 0.0) <= now:
            await self._read_batch(batch, now)
        return key

    async def current(self, case_id: str) -> DataKey:
        """The case's key as the vault holds it now, never from memory: for what hands
        the case's data to someone (a partner's request), which must stop the moment
        the case is erased. Kept afterwards as `get` keeps it; forgotten if missing."""
        try:
            key, _ = await self._vault.get_in_batch(case_id)
        except CaseKeyMissingError:
            self.forget(case_id)
            raise
        return self.remember(key)

    async def _read_batch(self, batch: str, now: float) -> None:
        self._batches[batch] = now + self._ttl  # before the read: one read a batch
        if len(self._batches) > self._size:
            self._batches = {b: until for b, until in self._batches.items() if until > now}
        try:
            siblings = await self._vault.batch(batch)
        except Exception as exc:
            # The key asked for is at hand; its batch is read with the next one's miss.
            self._batches.pop(batch, None)
            log.warning("case key batch not read", error=type(exc).__name__)
            return
        for sibling in siblings:
            if sibling.case_id not in self._keys:
                self._keep(sibling, now + self._ttl)

    def remember(self, key: DataKey) -> DataKey:
        """Keep a key this process holds already (one it just stored, say)."""
        if self._ttl > 0:
            self._keep(key, self._clock() + self._ttl)
        return key

    def _keep(self, key: DataKey, until: float) -> None:
        self._keys[key.case_id] = (until, key)
        self._keys.move_to_end(key.case_id)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def forget(self, case_id: str) -> None:
        """Drop a key from what is kept (its case was erased, or never stored)."""
        self._keys.pop(case_id, None)

    def __len__(self) -> int:
        return len(self._keys)
