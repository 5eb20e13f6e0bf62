"""The case keys a service reads: one read of a case's key brings its batch's, each kept
for the TTL from that read; erased keys are never kept; 0 keeps nothing."""

from __future__ import annotations

import asyncio

import pytest
from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.key_cache import KeyCache

from tests.support.fixtures import FakeKeyVault

pytestmark = pytest.mark.unit


class CountingVault(FakeKeyVault):
    def __init__(self) -> None:
        super().__init__()
        self.by_id: list[str] = []
        self.batch_reads: list[str] = []
        self.batch_fails = 0
        self.pause = False

    async def get_in_batch(self, case_id: str) -> tuple[DataKey, str | None]:
        self.by_id.append(case_id)
        if self.pause:
            await asyncio.sleep(0)
        return await super().get_in_batch(case_id)

    async def batch(self, batch_id: str) -> list[DataKey]:
        self.batch_reads.append(batch_id)
        if self.batch_fails:
            self.batch_fails -= 1
            raise ConnectionError("store away")
        return await super().batch(batch_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_read_of_a_key_brings_the_others_stored_with_it() -> None:
    vault, clock = CountingVault(), Clock()
    made = await vault.create_many(["a", "b", "c"])
    other = await vault.create_many(["d"])
    cache = KeyCache(vault, ttl=30, clock=clock)

    got = [await cache.get(case_id) for case_id in ("a", "b", "c", "d")]

    assert got == [*made, *other]
    assert vault.by_id == ["a", "d"]  # b and c came with a's batch
    assert vault.batch_reads == ["batch-1", "batch-2"]


async def test_keys_are_kept_for_the_ttl_from_the_read_that_brought_them() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = KeyCache(vault, ttl=30, clock=clock)
    await cache.get("a")
    clock.now = 29
    await cache.get("b")  # brought by a's read at 0
    assert vault.by_id == ["a"]
    clock.now = 31
    await cache.get("b")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == ["batch-1", "batch-1"]  # the batch is read again too


async def test_an_erased_key_is_never_kept_and_is_asked_for_each_time() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "gone"])
    await vault.destroy("gone")
    cache = KeyCache(vault, ttl=30, clock=clock)
    await cache.get("a")
    for _ in range(2):
        with pytest.raises(CaseKeyMissingError):
            await cache.get("gone")
    assert vault.by_id == ["a", "gone", "gone"]
    assert vault.batch_reads == ["batch-1"]  # not read again within the TTL


async def test_a_forgotten_key_is_read_from_the_vault_again() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = KeyCache(vault, ttl=30, clock=clock)
    await cache.get("a")
    cache.forget("b")  # its case was erased: the vault is asked, and says so
    await vault.destroy("b")
    with pytest.raises(CaseKeyMissingError):
        await cache.get("b")


async def test_without_a_ttl_every_read_asks_the_vault_for_that_key_alone() -> None:
    vault = CountingVault()
    await vault.create_many(["a", "b"])
    cache = KeyCache(vault, ttl=0)
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
    cache = KeyCache(vault, ttl=30, clock=clock)
    assert await cache.get("a") == made[0]
    assert await cache.get("b") == made[1]  # read alone, and its batch now
    await cache.get("c")
    assert vault.by_id == ["a", "b"]
    assert vault.batch_reads == ["batch-1", "batch-1"]


async def test_misses_of_one_batch_at_once_read_it_once() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b", "c"])
    vault.pause = True
    cache = KeyCache(vault, ttl=30, clock=clock)
    await asyncio.gather(cache.get("a"), cache.get("b"))
    assert vault.batch_reads == ["batch-1"]
    await cache.get("c")
    assert sorted(vault.by_id) == ["a", "b"]


async def test_at_most_size_keys_are_kept_the_least_recently_used_going_first() -> None:
    vault, clock = CountingVault(), Clock()
    for case_id in ("a", "b", "c"):
        await vault.create(case_id)  # stored alone: no batch
    cache = KeyCache(vault, ttl=30, size=2, clock=clock)
    for case_id in ("a", "b", "a", "c"):
        await cache.get(case_id)
    assert vault.by_id == ["a", "b", "c"]
    await cache.get("a")
    await cache.get("b")  # went when c came in
    assert vault.by_id == ["a", "b", "c", "b"]
    assert len(cache) == 2


async def test_current_asks_the_vault_each_time_so_an_erasure_counts_at_once() -> None:
    vault, clock = CountingVault(), Clock()
    await vault.create_many(["a", "b"])
    cache = KeyCache(vault, ttl=30, clock=clock)
    await cache.get("a")  # b comes with it
    assert (await cache.current("b")).case_id == "b"
    assert vault.by_id == ["a", "b"]
    await vault.destroy("b")  # erased by intake; this process has not heard yet
    with pytest.raises(CaseKeyMissingError):
        await cache.current("b")
    with pytest.raises(CaseKeyMissingError):
        await cache.get("b")  # and no longer kept
    assert vault.by_id == ["a", "b", "b", "b"]
