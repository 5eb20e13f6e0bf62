"""The case keys a service reads: one read of a young key brings its batch's, each kept
for the TTL from that read; erased keys are never kept, nor brought back by a read under
way; `current` always asks the vault; 0 keeps nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.crypto import CaseKeyMissingError, DataKey, StoredKey
from lintas_shared.key_cache import BATCH_AGE, KeyCache

from tests.support.fixtures import FakeKeyVault

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class CountingVault(FakeKeyVault):
    def __init__(self) -> None:
        super().__init__()
        self.created_at = NOW
        self.by_id: list[str] = []
        self.batch_reads: list[str] = []
        self.batch_fails = 0
        #: Whether a read gives way to other tasks, as a real store's does.
        self.pause = False
        #: Set while a batch read waits for it.
        self.hold: asyncio.Event | None = None
        #: Set once a batch's query has run.
        self.batch_read = asyncio.Event()

    async def entry(self, case_id: str) -> StoredKey:
        self.by_id.append(case_id)
        if self.pause:
            await asyncio.sleep(0)
        return await super().entry(case_id)

    async def batch(self, batch_id: str) -> list[DataKey]:
        self.batch_reads.append(batch_id)
        found = await super().batch(batch_id)  # what the store's query saw
        self.batch_read.set()
        if self.pause:
            await asyncio.sleep(0)
        if self.hold is not None:
            await self.hold.wait()
        if self.batch_fails:
            self.batch_fails -= 1
            raise ConnectionError("store away")
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache_on(vault: CountingVault, clock: Clock, **options: int) -> KeyCache:
    return KeyCache(vault, ttl=30, clock=clock, wall_clock=lambda: NOW, **options)


async def test_one_read_of_a_key_brings_the_others_stored_with_it() -> None:
    vault, clock = CountingVault(), Clock()
    made = await vault.create_many(["a", "b", "c"])
    other = await vault.create_many(["d"])
    cache = cache_on(vault, clock)

    got = [await cache.get(case_id) for case_id in ("a", "b", "c", "d")]

    assert got == [*made, *other]
    assert vault.by_id == ["a", "d"]  # b and c came with a's batch
    assert vault.batch_reads == ["batch-1", "batch-2"]


async def test_an_old_key_is_read_alone() -> None:
    vault, clock = CountingVault(), Clock()
    vault.created_at = NOW - BATCH_AGE - timedelta(seconds=1)
    await vault.create_many(["a", "b"])
    cache = cache_on(vault, clock)
    await cache.get("a")
    await cache.get("b")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == []


async def test_keys_are_kept_for_the_ttl_from_the_read_that_brought_them() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b", "c"])
    cache = cache_on(vault, clock)
    await cache.get("a")
    clock.now = 29
    await cache.get("b")  # brought by a's read at 0
    assert vault.by_id == ["a"]
    clock.now = 31
    assert len(cache) == 3
    await cache.get("b")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == ["batch-1", "batch-1"]
    await cache.get("a")  # expired at 30, and kept anew by b's batch at 31
    await cache.get("c")
    assert vault.by_id == ["a", "b"]


async def test_expired_keys_are_dropped_without_being_asked_for() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = cache_on(vault, clock)
    await cache.get("a")
    assert len(cache) == 2
    clock.now = 31
    with pytest.raises(CaseKeyMissingError):
        await cache.get("never-stored")
    assert len(cache) == 0


async def test_an_erased_key_is_never_kept_and_is_asked_for_each_time() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "gone"])
    await vault.destroy("gone")
    cache = cache_on(vault, clock)
    await cache.get("a")
    assert len(cache) == 1  # the batch read found a only
    for _ in range(2):
        with pytest.raises(CaseKeyMissingError):
            await cache.get("gone")
    assert vault.by_id == ["a", "gone", "gone"]


async def test_a_forgotten_key_is_read_from_the_vault_again() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = cache_on(vault, clock)
    await cache.get("a")
    cache.forget("b")  # its case was erased: the vault is asked, and says so
    await vault.destroy("b")
    with pytest.raises(CaseKeyMissingError):
        await cache.get("b")
    assert vault.by_id == ["a", "b"]


async def test_a_read_under_way_when_its_key_is_forgotten_does_not_bring_it_back() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    vault.hold = asyncio.Event()
    cache = cache_on(vault, clock)
    reading = asyncio.ensure_future(cache.get("a"))
    await vault.batch_read.wait()  # the batch's query has seen b
    await vault.destroy("b")
    cache.forget("b")  # the erasure is heard while the read is still under way
    vault.hold.set()
    assert (await reading).case_id == "a"
    assert len(cache) == 1
    with pytest.raises(CaseKeyMissingError):
        await cache.get("b")


async def test_a_key_given_back_and_kept_again_is_kept() -> None:
    vault, clock = CountingVault(), Clock()
    [key] = await vault.create_many(["a"])
    cache = cache_on(vault, clock)
    cache.remember(key)
    cache.forget("a")  # intake's give_back
    cache.remember(key)  # handed out again
    assert await cache.get("a") == key
    assert vault.by_id == []


async def test_without_a_ttl_every_read_asks_the_vault_for_that_key_alone() -> None:
    vault = CountingVault()
    await vault.create_many(["a", "b"])
    cache = KeyCache(vault, ttl=0, wall_clock=lambda: NOW)
    for case_id in ("a", "b", "a"):
        await cache.get(case_id)
    assert cache.remember((await vault.create_many(["c"]))[0]).case_id == "c"
    assert vault.by_id == ["a", "b", "a"]
    assert vault.batch_reads == []
    assert len(cache) == 0


async def test_a_failed_batch_read_still_answers_and_is_tried_again_by_the_next_miss() -> None:
    vault, clock = CountingVault(), Clock()
    made = await vault.create_many(["a", "b", "c"])
    vault.batch_fails = 1
    cache = cache_on(vault, clock)
    assert await cache.get("a") == made[0]
    assert await cache.get("b") == made[1]  # read alone, and its batch now
    await cache.get("c")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == ["batch-1", "batch-1"]


async def test_a_cancelled_batch_read_is_tried_again_by_the_next_miss() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b", "c"])
    vault.hold = asyncio.Event()
    cache = cache_on(vault, clock)
    reading = asyncio.ensure_future(cache.get("a"))
    await vault.batch_read.wait()
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    vault.hold.set()
    await cache.get("b")
    await cache.get("c")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == ["batch-1", "batch-1"]


async def test_misses_of_one_batch_at_once_read_it_once() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b", "c"])
    vault.pause = True
    cache = cache_on(vault, clock)
    await asyncio.gather(cache.get("a"), cache.get("b"))
    assert vault.batch_reads == ["batch-1"]
    await cache.get("c")
    assert sorted(vault.by_id) == ["a", "b"]


async def test_at_most_size_keys_are_kept_the_oldest_read_going_first() -> None:
    vault, clock = CountingVault(), Clock()
    for case_id in ("a", "b", "c"):
        await vault.create(case_id)  # stored alone: no batch
    cache = cache_on(vault, clock, size=2)
    for case_id in ("a", "b", "a", "c"):
        await cache.get(case_id)
    assert vault.by_id == ["a", "b", "c"]
    await cache.get("b")
    await cache.get("a")  # went when c came in
    assert vault.by_id == ["a", "b", "c", "a"]
    assert len(cache) == 2


async def test_batch_mates_never_push_out_the_key_asked_for() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["z0", "z1", "z2", "z3", "z4"])
    cache = cache_on(vault, clock, size=2)
    await cache.get("z0")
    await cache.get("z0")
    assert vault.by_id == ["z0"]
    assert len(cache) == 2


async def test_current_asks_the_vault_each_time_so_an_erasure_counts_at_once() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = cache_on(vault, clock)
    await cache.get("a")  # b comes with it
    assert (await cache.current("b")).case_id == "b"
    assert vault.by_id == ["a", "b"]
    await vault.destroy("b")  # erased by intake; this process has not heard yet
    with pytest.raises(CaseKeyMissingError):
        await cache.current("b")
    with pytest.raises(CaseKeyMissingError):
        await cache.get("b")  # and no longer kept
    assert vault.by_id == ["a", "b", "b", "b"]
