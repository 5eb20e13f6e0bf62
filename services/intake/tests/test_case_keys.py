"""Intake's case keys: new cases' keys are stored ahead, many to a vault write, and come
back when their case is refused; fresh keys come from memory, an erasure here is
honoured at once, another instance's within the TTL, and a missing key is never cached."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from lintas_intake.adapters.case_keys import CachedCaseKeys
from lintas_shared.crypto import CaseKeyMissingError, DataKey, StoredKey

from tests.support.fixtures import FakeKeyVault

pytestmark = pytest.mark.unit


class CountingVault(FakeKeyVault):
    def __init__(self) -> None:
        super().__init__()
        #: Reads of the vault, of one key or of a batch.
        self.gets = 0
        self.writes: list[int] = []
        #: Whether a write gives way to other tasks, as a real store's does.
        self.pause = False

    async def entry(self, case_id: str) -> StoredKey:
        self.gets += 1
        return await super().entry(case_id)

    async def batch(self, batch_id: str) -> list[DataKey]:
        self.gets += 1
        return await super().batch(batch_id)

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]:
        self.writes.append(len(case_ids))
        if self.pause:
            await asyncio.sleep(0)
        return await super().create_many(case_ids)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_created_or_read_key_is_served_from_memory_until_it_expires() -> None:
    vault, clock = CountingVault(), Clock()
    keys = CachedCaseKeys(vault, ttl=30, clock=clock)
    [created] = await keys.fresh(1)
    assert await keys.get(created.case_id) == created
    assert vault.gets == 0
    clock.now = 31
    assert await keys.get(created.case_id) == created
    assert vault.gets == 2  # its own read, and its batch's
    assert await keys.get(created.case_id) == created
    assert vault.gets == 2


async def test_an_erasure_here_is_honoured_at_once_and_elsewhere_within_the_ttl() -> None:
    vault, clock = CountingVault(), Clock()
    keys = CachedCaseKeys(vault, ttl=30, clock=clock)
    other_instance = CachedCaseKeys(vault, ttl=30, clock=clock)
    [key] = await keys.fresh(1)
    await other_instance.get(key.case_id)
    assert await keys.destroy(key.case_id)
    with pytest.raises(CaseKeyMissingError):
        await keys.get(key.case_id)
    clock.now = 31
    with pytest.raises(CaseKeyMissingError):
        await other_instance.get(key.case_id)


async def test_a_missing_key_is_asked_for_each_time_and_the_cache_is_bounded() -> None:
    vault = CountingVault()
    keys = CachedCaseKeys(vault, size=2)
    for _ in range(2):
        with pytest.raises(CaseKeyMissingError):
            await keys.get("gone")
    assert vault.gets == 2
    a, b, c = await keys.fresh(3)
    await keys.get(c.case_id)
    await keys.get(b.case_id)
    assert vault.gets == 2
    await keys.get(a.case_id)  # the oldest went first: read again, with its batch
    assert vault.gets == 4


async def test_new_cases_keys_are_stored_ahead_many_to_a_write_each_under_a_new_id() -> None:
    vault = CountingVault()
    keys = CachedCaseKeys(vault, ahead=4)
    handed = [key for _ in range(5) for key in await keys.fresh(1)]
    assert vault.writes == [5]  # one write for the first and four ahead
    handed += await keys.fresh(3)  # more than are left: one write for them and four more
    assert vault.writes == [5, 7]
    ids = [key.case_id for key in handed]
    assert len(set(ids)) == 8
    for key in handed:  # each already in the vault, under its case's id
        assert await vault.get(key.case_id) == key


async def test_keys_given_back_are_handed_out_again_and_unused_ones_go_at_shutdown() -> None:
    vault = CountingVault()
    keys = CachedCaseKeys(vault, ahead=2)
    kept, refused = await keys.fresh(2)
    keys.give_back([refused])
    assert await keys.fresh(1) == [refused]  # no case was stored under it
    unused = await keys.fresh(1)
    keys.give_back(unused)
    assert await keys.discard_unused() == 2  # the one given back, the one left ahead
    assert set(vault.keys) == {kept.case_id, refused.case_id}
    assert vault.writes == [4]


async def test_requests_asking_at_once_share_one_vault_write() -> None:
    vault = CountingVault()
    vault.pause = True
    keys = CachedCaseKeys(vault, ahead=4)
    handed = await asyncio.gather(*(keys.fresh(2) for _ in range(3)))
    assert len({key.case_id for pair in handed for key in pair}) == 6
    assert vault.writes == [6]  # the two waiting found enough once the first had written
