"""The callers an instance remembers: for how long, from when, and what it never keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from lintas_shared.caller_cache import CallerCache

from tests.support.clocks import SteppedClock


class Store:
    """Who holds each credential, counting the reads."""

    def __init__(self, holders: dict[str, str]) -> None:
        self.holders = holders
        self.reads = 0

    def finder(
        self, credential: str, clock: SteppedClock | None = None, takes: float = 0.0
    ) -> Callable[[], Awaitable[str | None]]:
        async def find() -> str | None:
            self.reads += 1
            if clock is not None:
                clock.now += takes  # the read's own time
            return self.holders.get(credential)

        return find


async def test_a_found_caller_is_remembered_for_the_ttl_then_read_again() -> None:
    clock, store = SteppedClock(), Store({"k1": "org-a"})
    cache: CallerCache[str] = CallerCache(5.0, clock=clock)
    assert await cache.get("k1", store.finder("k1")) == "org-a"
    store.holders.clear()  # revoked elsewhere
    clock.now += 4.9
    assert await cache.get("k1", store.finder("k1")) == "org-a"
    assert store.reads == 1
    clock.now += 0.1
    assert await cache.get("k1", store.finder("k1")) is None
    assert store.reads == 2


async def test_the_ttl_counts_from_when_the_read_began() -> None:
    clock, store = SteppedClock(), Store({"k1": "org-a"})
    cache: CallerCache[str] = CallerCache(5.0, clock=clock)
    # A slow read (begun before a revocation, answered after it) keeps its answer no
    # longer than the ttl from its start.
    assert await cache.get("k1", store.finder("k1", clock, takes=3.0)) == "org-a"
    clock.now += 1.9
    assert await cache.get("k1", store.finder("k1")) == "org-a"
    clock.now += 0.1
    store.holders.clear()
    assert await cache.get("k1", store.finder("k1")) is None
    assert store.reads == 2


async def test_no_one_found_is_never_remembered() -> None:
    clock, store = SteppedClock(), Store({})
    cache: CallerCache[str] = CallerCache(5.0, clock=clock)
    assert await cache.get("k2", store.finder("k2")) is None
    store.holders["k2"] = "org-b"  # a key issued a moment later works at once
    assert await cache.get("k2", store.finder("k2")) == "org-b"
    assert store.reads == 2


async def test_a_ttl_of_zero_reads_every_time() -> None:
    clock, store = SteppedClock(), Store({"k1": "org-a"})
    cache: CallerCache[str] = CallerCache(0.0, clock=clock)
    assert await cache.get("k1", store.finder("k1")) == "org-a"
    store.holders.clear()
    assert await cache.get("k1", store.finder("k1")) is None
    assert store.reads == 2


async def test_forget_and_clear_drop_what_was_remembered() -> None:
    clock, store = SteppedClock(), Store({"k1": "org-a", "k2": "org-b"})
    cache: CallerCache[str] = CallerCache(5.0, clock=clock)
    for key in ("k1", "k2"):
        await cache.get(key, store.finder(key))
    store.holders.clear()
    cache.forget("k1")
    assert await cache.get("k1", store.finder("k1")) is None
    assert await cache.get("k2", store.finder("k2")) == "org-b"
    cache.clear()
    assert await cache.get("k2", store.finder("k2")) is None
    assert store.reads == 4


async def test_at_most_size_callers_are_kept_the_least_recently_used_going_first() -> None:
    clock, store = SteppedClock(), Store({f"k{i}": f"org-{i}" for i in range(3)})
    cache: CallerCache[str] = CallerCache(5.0, size=2, clock=clock)
    for key in ("k0", "k1", "k0", "k2"):  # k0 used again: k1 is the least recent
        await cache.get(key, store.finder(key))
    store.holders.clear()
    assert await cache.get("k0", store.finder("k0")) == "org-0"
    assert await cache.get("k2", store.finder("k2")) == "org-2"
    assert await cache.get("k1", store.finder("k1")) is None  # pushed out
    assert store.reads == 4


async def test_a_read_under_way_when_a_credential_is_forgotten_is_not_kept() -> None:
    clock, store = SteppedClock(), Store({"k1": "org-a"})
    cache: CallerCache[str] = CallerCache(5.0, clock=clock)
    release = asyncio.Event()

    async def slow_find() -> str | None:
        answer = await store.finder("k1")()  # the store answers before the revocation
        await release.wait()  # and the answer comes back after it
        return answer

    reading = asyncio.create_task(cache.get("k1", slow_find))
    await asyncio.sleep(0)  # the read has begun
    store.holders.clear()
    cache.forget("k1")  # revoked through this instance meanwhile
    release.set()
    assert await reading == "org-a"  # what the store said when asked
    assert await cache.get("k1", store.finder("k1")) is None  # but it was not kept
    assert store.reads == 2
