"""Case keys as a service reads them: a key read is kept a few seconds, and with a young
key the keys stored in the same vault write.

Intake stores new cases' keys ahead, many in one write, and names them as one batch
(`KeyVault.create_many`): the cases submitted over the next seconds take those keys one
after another. So when referral or notify first reads one of them, it reads the whole
batch in one more query, and the next cases' keys are at hand: at two cases a second
that was one `case_keys.find` a case in each of them, now about two a batch's worth of
cases within the TTL. A key created more than `BATCH_AGE` ago is read alone: the cases
of its batch came in long before (a partner's answer, a correction days later).

A key is kept for `ttl` seconds from the read that brought it (`LINTAS_CASE_KEY_CACHE_
SECONDS`), at most `size` of them (the oldest read goes first); 0 keeps nothing and reads
the vault every time, one key at a time. Keys the vault does not have (erased) are never
kept: the next read asks again.

Erasure: the vault deletes the key at once; a process that read it in the last `ttl`
seconds may still hold it that long. The instance that hears of the erasure forgets it
(`forget`, which also keeps a read under way from bringing it back) and acts on nothing
of the case afterwards; another instance of the same service drops it within `ttl`. What
the cache widens is the window in which an event that came before the erasure, handled
late, still opens the case's data: up to `ttl` seconds instead of the read's
milliseconds (README, Privacy). Referral's partner API and notify's sends from its
schedule ask the vault each time (`current`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from lintas_shared.crypto import CaseKeyMissingError, DataKey, StoredKey
from lintas_shared.logging import get_logger
from lintas_shared.settings import DEFAULT_CASE_KEY_CACHE_SECONDS

log = get_logger(__name__)
#: Keys kept at most (about 200 bytes each).
DEFAULT_SIZE = 10_000
#: A key older than this is read without its batch.
BATCH_AGE = timedelta(minutes=10)


class BatchedKeySource(Protocol):
    """The vault's reads (`lintas_shared.crypto.KeyVault`)."""

    async def entry(self, case_id: str) -> StoredKey:
        """The case's key with its batch; raises CaseKeyMissingError after erasure."""
        ...

    async def batch(self, batch_id: str) -> list[DataKey]:
        """The keys of one batch still in the vault."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyCache:
    """Reads case keys from the vault, keeping each one read (and its batch) a while."""

    def __init__(
        self,
        vault: BatchedKeySource,
        *,
        ttl: float = DEFAULT_CASE_KEY_CACHE_SECONDS,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._vault = vault
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._wall_clock = wall_clock
        #: case id -> (kept until, key), oldest read first (so also soonest expired).
        self._keys: OrderedDict[str, tuple[float, DataKey]] = OrderedDict()
        #: Batches read (or being read) and until when: not read again meanwhile.
        self._batches: dict[str, float] = {}
        #: Counts `forget` calls; case id -> the count at its last forget (the latest
        #: `size`): a read that began before it must not keep the key again.
        self._forgets = 0
        self._forgotten: OrderedDict[str, int] = OrderedDict()

    async def get(self, case_id: str) -> DataKey:
        """The case's key, kept or read; raises CaseKeyMissingError once it is erased."""
        now = self._clock()
        self._expire(now)
        known = self._keys.get(case_id)
        if known is not None:
            return known[1]
        began = self._forgets
        stored = await self._vault.entry(case_id)
        if self._ttl <= 0:
            return stored.key
        if stored.batch is not None and self._young(stored) and self._batches_due(stored.batch):
            await self._read_batch(stored.batch, began)
        # After its batch-mates: the key asked for is the last to be pushed out.
        self._keep([stored.key], began)
        return stored.key

    async def current(self, case_id: str) -> DataKey:
        """The case's key as the vault holds it now, never from memory: for what hands
        the case's data to someone (a partner's request, a deferred SMS), which must stop
        the moment the case is erased. Kept afterwards as `get` keeps it."""
        began = self._forgets
        try:
            stored = await self._vault.entry(case_id)
        except CaseKeyMissingError:
            self._keys.pop(case_id, None)
            raise
        self._keep([stored.key], began)
        return stored.key

    def remember(self, key: DataKey) -> DataKey:
        """Keep a key this process holds already (one it just stored, say)."""
        self._keep([key], self._forgets)
        return key

    def forget(self, case_id: str) -> None:
        """Drop a key from what is kept (its case was erased, or never stored); a read
        under way when this is called does not bring it back."""
        self._keys.pop(case_id, None)
        self._forgets += 1
        self._forgotten[case_id] = self._forgets
        self._forgotten.move_to_end(case_id)
        while len(self._forgotten) > self._size:
            self._forgotten.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)

    def _young(self, stored: StoredKey) -> bool:
        created = stored.created_at
        return created is not None and self._wall_clock() - created < BATCH_AGE

    def _batches_due(self, batch: str) -> bool:
        now = self._clock()
        if self._batches.get(batch, 0.0) > now:
            return False
        if len(self._batches) >= self._size:
            self._batches = {b: until for b, until in self._batches.items() if until > now}
        return True

    async def _read_batch(self, batch: str, began: int) -> None:
        self._batches[batch] = self._clock() + self._ttl  # before the read: one read a batch
        try:
            mates = await self._vault.batch(batch)
        except BaseException as exc:
            # The key asked for is at hand; its batch is read with the next one's miss.
            self._batches.pop(batch, None)
            if not isinstance(exc, Exception):
                raise  # cancelled: stop as asked
            log.warning("case key batch not read", error=type(exc).__name__)
            return
        self._keep(mates, began)

    def _keep(self, keys: Iterable[DataKey], began: int) -> None:
        """Keep keys read from the vault by a read that began at forget count `began`
        (or held already), unless forgotten since; each until `ttl` from now."""
        if self._ttl <= 0:
            return
        until = self._clock() + self._ttl
        for key in keys:
            if self._forgotten.get(key.case_id, 0) > began:
                continue  # erased while the read was under way
            self._keys.pop(key.case_id, None)
            self._keys[key.case_id] = (until, key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Drop the keys whose time is up (the oldest reads, at the front)."""
        while self._keys:
            until, _ = next(iter(self._keys.values()))
            if until > now:
                return
            self._keys.popitem(last=False)
