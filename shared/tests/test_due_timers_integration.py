"""Wake-up times on the real store: "what is due?" answered from the `due_at` index,
earliest first, a limit at a time; moved and cleared timers are not handed out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from lintas_shared.due_timers import DueTimers
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def timers(mongo: AsyncMongoClient[Document], database_name: str) -> DueTimers:
    due = DueTimers(mongo[database_name]["things_timers"])
    await due.ensure_indexes()
    return due


async def test_due_owners_come_earliest_first_and_only_when_due(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await timers(mongo, database_name)
    await due.set("later", T0 + timedelta(minutes=3))
    await due.set("sooner", T0 + timedelta(minutes=1))
    await due.set("tomorrow", T0 + 24 * HOUR)
    assert await due.due(T0) == []
    assert await due.due(T0 + timedelta(minutes=1)) == ["sooner"]
    assert await due.due(T0 + timedelta(minutes=5)) == ["sooner", "later"]


async def test_moved_and_cleared_timers_are_not_handed_out(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await timers(mongo, database_name)
    await due.set("moved", T0 + timedelta(minutes=1))
    await due.set("cleared", T0 + timedelta(minutes=1))
    await due.set("moved", T0 + HOUR)
    await due.clear("cleared")
    assert await due.due(T0 + timedelta(minutes=2)) == []
    assert await due.get("moved") == T0 + HOUR
    assert await due.get("cleared") is None
    assert await due.due(T0 + HOUR) == ["moved"]


async def test_a_time_given_in_another_zone_is_found(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await timers(mongo, database_name)
    seven_in_jakarta = datetime(2026, 11, 24, 13, 1, tzinfo=timezone(timedelta(hours=7)))
    await due.set("quiet-hours", seven_in_jakarta)
    assert await due.due(T0) == []
    assert await due.due(T0 + timedelta(minutes=1)) == ["quiet-hours"]


async def test_a_time_long_past_is_found(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # A start-up repair sets what fell due while the process was down; dates before
    # 2001 have fewer digits of milliseconds, which a text order would misplace.
    due = await timers(mongo, database_name)
    await due.set("overdue", T0 - HOUR)
    await due.set("ancient", datetime(1999, 1, 1, tzinfo=UTC))
    assert await due.due(T0) == ["ancient", "overdue"]


async def test_a_crowded_minute_is_handed_out_a_limit_at_a_time(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # 07:00 after quiet hours: many wake-ups in one minute.
    due = await timers(mongo, database_name)
    for n in range(5):
        await due.set(f"sms-{n}", T0 + timedelta(minutes=1, seconds=n))
    handed: list[str] = []
    while batch := await due.due(T0 + timedelta(minutes=2), limit=2):
        assert len(batch) <= 2
        handed += batch
        for owner in batch:
            await due.clear(owner)
    assert handed == [f"sms-{n}" for n in range(5)]


async def test_ensure_all_sets_missing_and_later_timers_only(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    due = await timers(mongo, database_name)
    await due.set("early", T0)
    await due.set("late", T0 + HOUR)
    count = await due.ensure_all({"early": T0 + HOUR, "late": T0, "missing": T0})
    assert count == 2
    assert await due.get("early") == T0  # never moved later
    assert await due.get("late") == T0
    assert sorted(await due.due(T0)) == ["early", "late", "missing"]
