"""Quiet hours and rate limits defer messages to a stored time; nothing is dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lintas_notify.dispatch import SendRules
from lintas_notify.domain.schedule import ProviderRateLimit, WorkerLimit
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.notify import Notify, deadline_approaching, with_worker

pytestmark = pytest.mark.integration


async def submit(
    notify: Notify, case_id: str, phone: str = "+6281234567890", **worker: object
) -> None:
    key = await notify.vault.create(case_id)
    event = with_worker(case_submitted(case_id, key=key, phone=phone), **worker)
    await notify.handlers.on_case_submitted(event)


async def statuses(notify: Notify, case_id: str) -> list[str]:
    return [r["status"] for r in await notify.messages.for_case(case_id)]


async def test_at_night_in_her_zone_the_sms_waits_until_seven(notify: Notify) -> None:
    notify.clock.now = datetime(2026, 9, 16, 12, 30, tzinfo=UTC)  # 19:30 WIB, 21:30 WIT
    await submit(notify, "case-java")
    await submit(notify, "case-papua", phone="+6281211112222", time_zone="Asia/Jayapura")
    assert await statuses(notify, "case-java") == ["sent"]
    [record] = await notify.messages.for_case("case-papua")
    assert record["status"] == "scheduled"
    assert record["send_after"] == datetime(2026, 9, 16, 22, 0, tzinfo=UTC)  # 07:00 WIT
    assert record["status_history"][-1]["reason"] == "quiet hours"

    notify.clock.now = datetime(2026, 9, 16, 21, 59, tzinfo=UTC)
    assert await notify.dispatcher.run_due() == 0
    notify.clock.now = datetime(2026, 9, 16, 22, 0, tzinfo=UTC)
    assert await notify.dispatcher.run_due() == 1
    assert await statuses(notify, "case-papua") == ["sent"]
    assert len(notify.provider.sent) == 2


async def test_hong_kong_quiet_hours(notify: Notify) -> None:
    notify.clock.now = datetime(2026, 9, 16, 14, 0, tzinfo=UTC)  # 22:00 HKT, 21:00 WIB
    await submit(notify, "case-hk", current_country="HK")
    [record] = await notify.messages.for_case("case-hk")
    assert record["send_after"] == datetime(2026, 9, 16, 23, 0, tzinfo=UTC)  # 07:00 HKT


async def test_a_restart_keeps_the_schedule(notify: Notify) -> None:
    notify.clock.now = datetime(2026, 9, 16, 15, 0, tzinfo=UTC)  # 22:00 WIB
    await submit(notify, "case-r")
    notify.rewire(notify.provider)  # a new process: nothing held in memory
    notify.clock.now = datetime(2026, 9, 17, 0, 0, tzinfo=UTC)
    assert await notify.dispatcher.run_due() == 1


async def test_more_than_her_daily_limit_waits_for_the_next_day(notify: Notify) -> None:
    notify.rewire(notify.provider, SendRules(worker_limit=WorkerLimit(per_window=2)))
    start = notify.clock.now
    await submit(notify, "case-l")
    for day in (10, 11):
        notify.clock.advance(minutes=5)
        await notify.handlers.on_deadline_approaching(
            deadline_approaching("case-l", datetime(2026, 10, day).date())
        )
    assert sorted(await statuses(notify, "case-l")) == ["scheduled", "sent", "sent"]
    [waiting] = [r for r in await notify.messages.for_case("case-l") if r["status"] == "scheduled"]
    assert waiting["send_after"] == start + timedelta(days=1)
    assert waiting["status_history"][-1]["reason"] == "worker daily limit"
    notify.clock.now = start + timedelta(days=1)
    assert await notify.dispatcher.run_due() == 1
    assert await statuses(notify, "case-l") == ["sent", "sent", "sent"]


async def test_the_provider_rate_defers_the_overflow(notify: Notify) -> None:
    notify.rewire(notify.provider, SendRules(provider_rate=ProviderRateLimit(per_second=1)))
    await submit(notify, "case-1", phone="+6281200000001")
    await submit(notify, "case-2", phone="+6281200000002")
    assert await statuses(notify, "case-1") == ["sent"]
    [waiting] = await notify.messages.for_case("case-2")
    assert waiting["status"] == "scheduled"
    assert waiting["send_after"] == notify.clock.now + timedelta(seconds=1)
    assert waiting["status_history"][-1]["reason"] == "provider rate limit"
    notify.clock.advance(seconds=1)
    assert await notify.dispatcher.run_due() == 1
    assert len(notify.provider.sent) == 2


async def test_the_daily_count_is_read_from_the_messages_and_old_ones_are_scheduled(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    # No side collection: the daily limit reads the messages' own `sent_at` (by the
    # phone-hash index) and the schedule their `due_at`; a message written by the
    # previous version (no `due_at`, no `version`) is put in the schedule at start-up.
    notify.rewire(notify.provider, SendRules(worker_limit=WorkerLimit(per_window=2)))
    start = notify.clock.now
    await submit(notify, "case-lost")
    notify.clock.advance(minutes=5)
    await notify.handlers.on_deadline_approaching(
        deadline_approaching("case-lost", datetime(2026, 10, 10).date())
    )
    notify.clock.advance(minutes=5)
    await notify.handlers.on_deadline_approaching(
        deadline_approaching("case-lost", datetime(2026, 10, 11).date())
    )
    assert sorted(await statuses(notify, "case-lost")) == ["scheduled", "sent", "sent"]
    phone_hash = (await notify.messages.for_case("case-lost"))[0]["phone_hash"]
    assert len(await notify.messages.sent_times(phone_hash, start - timedelta(days=1))) == 2
    messages = mongo[notify.database]["messages"]
    await messages.update_many({"status": "scheduled"}, {"$unset": {"due_at": "", "version": ""}})
    notify.clock.now = start + timedelta(days=1)
    assert await notify.dispatcher.run_due() == 0  # not in the schedule: an old document
    await notify.messages.ensure_indexes()
    await notify.messages.ensure_indexes()  # again: nothing more
    assert await notify.dispatcher.run_due() == 1
    assert await statuses(notify, "case-lost") == ["sent", "sent", "sent"]
    assert await messages.count_documents({"version": {"$exists": False}}) == 0


async def test_a_sent_message_is_never_due(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    await submit(notify, "case-once")
    [record] = await notify.messages.for_case("case-once")
    assert record["status"] == "sent"
    assert "due_at" not in record
    messages = mongo[notify.database]["messages"]
    await messages.update_one({"_id": record["_id"]}, {"$set": {"due_at": notify.clock.now}})

    assert await notify.dispatcher.run_due() == 0

    assert len(notify.provider.sent) == 1
