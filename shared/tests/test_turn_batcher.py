"""TurnBatcher: the calls of one event-loop turn served by one run, each with its own
answer, whatever goes wrong (no servers)."""

from __future__ import annotations

import asyncio

import pytest
from lintas_shared.mongo import TurnBatcher
from pymongo.errors import AutoReconnect

pytestmark = pytest.mark.unit


class RefusedError(Exception):
    """What a store or driver says of one item it will not take."""


async def test_the_calls_of_one_turn_are_one_run_each_with_its_own_answer() -> None:
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int | BaseException]:
        runs.append(items)
        return [RefusedError(n) if n == 3 else n * 10 for n in items]

    batcher: TurnBatcher[int, int] = TurnBatcher(run, size=4)
    got = await asyncio.gather(*(batcher.call(n) for n in range(6)), return_exceptions=True)

    assert runs == [[0, 1, 2, 3], [4, 5]]
    assert [type(g) if isinstance(g, BaseException) else g for g in got] == [
        0,
        10,
        20,
        RefusedError,
        40,
        50,
    ]


async def test_one_item_that_fails_the_whole_run_fails_its_own_call_only() -> None:
    runs: list[list[str]] = []

    async def run(items: list[str]) -> list[str | BaseException]:
        runs.append(items)
        if "bad" in items:
            raise RefusedError("the driver would not encode it")
        return [item.upper() for item in items]

    batcher: TurnBatcher[str, str] = TurnBatcher(run, size=25)
    calls = (batcher.call(i) for i in ("a", "bad", "c"))
    got = await asyncio.gather(*calls, return_exceptions=True)

    assert got[0] == "A"
    assert isinstance(got[1], RefusedError)
    assert got[2] == "C"
    assert runs == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]  # then each alone


async def test_an_unreachable_store_fails_every_call_once() -> None:
    runs = 0

    async def run(items: list[str]) -> list[str | BaseException]:
        nonlocal runs
        runs += 1
        raise AutoReconnect("store unreachable")

    batcher: TurnBatcher[str, str] = TurnBatcher(run, size=25)
    got = await asyncio.gather(*(batcher.call(i) for i in "abc"), return_exceptions=True)

    assert [type(g) for g in got] == [AutoReconnect] * 3
    assert runs == 1  # not tried item by item: each caller's own retry decides


async def test_a_run_that_answers_too_few_leaves_no_caller_waiting() -> None:
    async def run(items: list[str]) -> list[str | BaseException]:
        return items[:1]

    batcher: TurnBatcher[str, str] = TurnBatcher(run, size=25)
    got = await asyncio.wait_for(
        asyncio.gather(*(batcher.call(i) for i in "ab"), return_exceptions=True), timeout=30
    )

    assert got[0] == "a"
    assert isinstance(got[1], Exception)  # told, not left waiting
