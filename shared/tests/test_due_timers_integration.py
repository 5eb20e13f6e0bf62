"""Wake-up times on the real store: found through minute slots read by `_id`, with the
whole-collection question as the rare fallback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lintas_shared.due_timers import DueTimers, slot_of
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def timers(mongo: AsyncMongoClient[Document], database_name: str) -> DueTimers:
    return DueTimers(mongo[database_name]["things_timers"], full_every=HOUR)


async def asked_at_t0(mongo: AsyncMongoClient[Document], database_name: str) -> DueTimers:
    """Timers whose first question (a whole-collection read) was asked at T0: later
    questions within the next minutes read the slots."""
    due = timers(mongo, database_name)
    assert await due.due(T0) == []
    return due


async def slots(mongo: AsyncMongoClient[Document], database_name: str) -> dict[str, list[str]]:
    collection = mongo[database_name]["things_timers_slots"]
    return {doc["_id"]: sorted(doc["owners"]) async for doc in collection.find({})}


async def test_due_owners_come_from_the_recent_slots_earliest_first(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = timers(mongo, database_name)
    assert await due.due(T0) == []  # the first question reads the whole collection
    await due.set("late", T0 + timedelta(minutes=2, seconds=30))
    await due.set("early", T0 + timedelta(minutes=1))
    await due.set("later", T0 + timedelta(days=7))
    assert await due.due(T0 + timedelta(minutes=1, seconds=59)) == ["early"]
    assert await due.due(T0 + timedelta(minutes=3)) == ["early", "late"]
    assert await slots(mongo, database_name) == {
        "2026-11-24T06:01": ["early"],
        "2026-11-24T06:02": ["late"],
        "2026-12-01T06:00": ["later"],
    }


async def test_moved_and_cleared_timers_leave_their_old_slots(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await asked_at_t0(mongo, database_name)
    await due.set("moved", T0 + timedelta(minutes=1))
    await due.set("moved", T0 + timedelta(minutes=30))
    await due.set("done", T0 + timedelta(minutes=1))
    await due.clear("done")
    assert await due.due(T0 + timedelta(minutes=2)) == []
    assert await slots(mongo, database_name) == {"2026-11-24T06:30": ["moved"]}
    assert await due.get("moved") == T0 + timedelta(minutes=30)


async def test_a_timer_missing_from_its_slot_is_found_by_the_fallback(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # Set before slots existed (or its slot entry lost): only the whole-collection
    # question, asked every `full_every` and after any jump of the clock, finds it.
    due = await asked_at_t0(mongo, database_name)
    await mongo[database_name]["things_timers"].insert_one(
        {"_id": "unlisted", "due_at": T0 + timedelta(minutes=1)}
    )
    assert await due.due(T0 + timedelta(minutes=2)) == []  # the slots do not know it
    assert await due.due(T0 + timedelta(minutes=2) + HOUR) == ["unlisted"]  # fallback
    jumpy = timers(mongo, database_name)
    assert await jumpy.due(T0) == []
    assert await jumpy.due(T0 + timedelta(minutes=10)) == ["unlisted"]  # a 10-minute jump


def test_slots_are_minutes_in_utc_whatever_zone_the_time_is_given_in() -> None:
    jakarta = timezone(timedelta(hours=7))
    assert slot_of(datetime(2026, 11, 24, 13, 5, 59, tzinfo=jakarta)) == "2026-11-24T06:05"
    assert slot_of(datetime(2026, 11, 24, 6, 5)) == "2026-11-24T06:05"  # naive: UTC


async def test_a_time_given_in_another_zone_is_found(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await asked_at_t0(mongo, database_name)
    seven_in_jakarta = datetime(2026, 11, 24, 13, 1, tzinfo=timezone(timedelta(hours=7)))
    await due.set("quiet-hours", seven_in_jakarta)
    assert await due.due(T0 + timedelta(minutes=1)) == ["quiet-hours"]


async def test_a_time_set_before_the_recent_minutes_is_found_at_the_next_question(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # A start-up repair sets what fell due while the process was down.
    due = await asked_at_t0(mongo, database_name)
    await due.set("overdue", T0 - HOUR)
    assert await due.due(T0 + timedelta(seconds=5)) == ["overdue"]


async def test_a_crowded_minute_is_handed_out_a_limit_at_a_time(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # 07:00 after quiet hours: many wake-ups in one minute.
    due = await asked_at_t0(mongo, database_name)
    for n in range(5):
        await due.set(f"sms-{n}", T0 + timedelta(minutes=1, seconds=n))
    handed: list[str] = []
    while batch := await due.due(T0 + timedelta(minutes=2), limit=2):
        assert len(batch) <= 2
        handed += batch
        for owner in batch:
            await due.clear(owner)
    assert handed == [f"sms-{n}" for n in range(5)]
    assert await slots(mongo, database_name) == {}


class SlotsMovingBackFirst:
    """The slots collection, where another process moves a timer back into the minute
    being read just before this reader drops that minute's stale entries."""

    def __init__(self, slots: Any, move_back: Callable[[], Awaitable[None]]) -> None:
        self._slots, self._move_back = slots, move_back

    async def update_one(self, query: Document, update: Document) -> object:
        if "$pullAll" in update:
            await self._move_back()
        return await self._slots.update_one(query, update)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slots, name)


async def test_a_timer_moved_back_while_its_minute_is_read_stays_listed(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    reader = await asked_at_t0(mongo, database_name)
    writer = timers(mongo, database_name)  # another process
    await writer.set("sms", T0 + timedelta(minutes=1, seconds=10))
    await writer.set("sms", T0 + timedelta(minutes=2))  # its 06:01 entry is now stale

    async def move_back() -> None:
        await writer.set("sms", T0 + timedelta(minutes=1, seconds=30))  # 06:01 again

    reader._slots = SlotsMovingBackFirst(reader._slots, move_back)  # type: ignore[assignment]
    # The reader saw the timer at 06:02 (stale for 06:01) before the move back.
    assert await reader.due(T0 + timedelta(minutes=1, seconds=40)) == []
    assert "sms" in (await slots(mongo, database_name))["2026-11-24T06:01"]
    later = await asked_at_t0(mongo, database_name)  # from the slots, not a full read
    assert await later.due(T0 + timedelta(minutes=2)) == ["sms"]
