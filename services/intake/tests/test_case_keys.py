"""The in-process cache of case keys: fresh keys come from memory, an erasure here is
honoured at once, another instance's within the TTL, and a missing key is never cached."""

from __future__ import annotations

import pytest
from lintas_intake.adapters.case_keys import CachedCaseKeys
from lintas_shared.crypto import CaseKeyMissingError, DataKey

from tests.support.fixtures import FakeKeyVault

pytestmark = pytest.mark.unit


class CountingVault(FakeKeyVault):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, case_id: str) -> DataKey:
        self.gets += 1
        return await super().get(case_id)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_created_or_read_key_is_served_from_memory_until_it_expires() -> None:
    vault, clock = CountingVault(), Clock()
    keys = CachedCaseKeys(vault, ttl=30, clock=clock)
    created = await keys.create("c1")
    assert await keys.get("c1") == created
    assert vault.gets == 0
    clock.now = 31
    assert await keys.get("c1") == created
    assert vault.gets == 1
    assert await keys.get("c1") == created
    assert vault.gets == 1


async def test_an_erasure_here_is_honoured_at_once_and_elsewhere_within_the_ttl() -> None:
    vault, clock = CountingVault(), Clock()
    keys = CachedCaseKeys(vault, ttl=30, clock=clock)
    other_instance = CachedCaseKeys(vault, ttl=30, clock=clock)
    await keys.create("c1")
    await other_instance.get("c1")
    assert await keys.destroy("c1")
    with pytest.raises(CaseKeyMissingError):
        await keys.get("c1")
    clock.now = 31
    with pytest.raises(CaseKeyMissingError):
        await other_instance.get("c1")


async def test_a_missing_key_is_asked_for_each_time_and_the_cache_is_bounded() -> None:
    vault = CountingVault()
    keys = CachedCaseKeys(vault, size=2)
    for _ in range(2):
        with pytest.raises(CaseKeyMissingError):
            await keys.get("gone")
    assert vault.gets == 2
    for case_id in ("a", "b", "c"):
        await keys.create(case_id)
    await keys.get("c")
    await keys.get("b")
    assert vault.gets == 2
    await keys.get("a")  # the least recently used went first
    assert vault.gets == 3
