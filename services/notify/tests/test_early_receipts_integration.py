"""Delivery receipts that overtake the `sent` record, kept in the store until it exists
(real MongoDB-protocol server; a gateway that reports before it answers the submit)."""

from __future__ import annotations

import asyncio

import pytest
from lintas_notify.dispatch import Dispatcher
from lintas_notify.domain.message import OutgoingSms
from lintas_shared.mongo import Document
from lintas_shared.outbox import entry_event
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.notify import Notify, RecordingProvider, wire_notify

pytestmark = pytest.mark.integration
DELIVERY_REPORTED = "org.lintas.notification.sms_delivery_reported"


class ReportsFirst(RecordingProvider):
    """A gateway whose delivery report arrives before its answer to the submit."""

    def __init__(self, notify: Notify, status: str = "delivered") -> None:
        super().__init__()
        self.notify, self.status = notify, status
        self.matched: list[bool] = []

    async def send(self, sms: OutgoingSms) -> str:
        provider_message_id = await super().send(sms)
        matched = await self.notify.conversations.receipt(provider_message_id, self.status, None)
        self.matched.append(matched)
        return provider_message_id


async def submit(notify: Notify, case_id: str) -> None:
    key = await notify.vault.create(case_id)
    await notify.handlers.on_case_submitted(case_submitted(case_id, key=key))


async def record(notify: Notify, case_id: str) -> Document:
    [doc] = await notify.messages.for_case(case_id)
    raw = await notify.messages._collection.find_one({"_id": doc["_id"]})
    assert raw is not None
    return raw


async def kept_receipts(mongo: AsyncMongoClient[Document], notify: Notify) -> list[Document]:
    return [doc async for doc in mongo[notify.database]["early_receipts"].find({})]


async def test_a_receipt_before_the_sent_record_is_applied_when_the_record_is_written(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    gateway = ReportsFirst(notify)
    notify.rewire(gateway)
    await submit(notify, "case-early")
    assert gateway.matched == [False]  # the record did not exist yet: kept, not lost
    raw = await record(notify, "case-early")
    assert raw["status"] == "delivered"
    assert [h["status"] for h in raw["status_history"]] == [
        "scheduled",
        "sending",
        "sent",
        "delivered",
    ]
    reports = [e for e in raw["outbox"] if entry_event(e).type == DELIVERY_REPORTED]
    assert len(reports) == 1
    assert entry_event(reports[0]).data["status"] == "delivered"
    assert await kept_receipts(mongo, notify) == []


async def test_a_kept_receipt_outlives_a_stop_and_the_next_pass_applies_it(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    gateway = ReportsFirst(notify, status="undelivered")
    # A process that stops right after writing `sent`, before it looks for the receipt.
    stopping = Dispatcher(
        notify.messages, notify.preferences, gateway, notify.vault, clock=notify.clock
    )
    notify.handlers.dispatcher = notify.conversations.dispatcher = stopping
    await submit(notify, "case-stop")
    assert (await record(notify, "case-stop"))["status"] == "sent"
    [kept] = await kept_receipts(mongo, notify)
    assert (kept["provider"], kept["status"]) == ("fake", "failed")
    assert set(kept) == {
        "_id",
        "provider",
        "provider_message_id",
        "status",
        "reason",
        "received_at",
    }  # nothing personal

    restarted = await wire_notify(mongo, notify.database)
    assert await restarted.dispatcher.settle_receipts() == 1
    raw = await record(restarted, "case-stop")
    assert raw["status"] == "failed"
    assert [entry_event(e).type for e in raw["outbox"]].count(DELIVERY_REPORTED) == 1
    assert await kept_receipts(mongo, notify) == []
    assert await restarted.dispatcher.settle_receipts() == 0


async def test_a_receipt_for_no_message_of_ours_is_dropped_after_the_retention(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    assert not await notify.conversations.receipt("not-ours-1", "delivered", None)
    assert not await notify.conversations.receipt("not-ours-2", "queued", None)  # not kept
    assert len(await kept_receipts(mongo, notify)) == 1
    assert await notify.dispatcher.settle_receipts() == 0
    assert len(await kept_receipts(mongo, notify)) == 1
    notify.clock.advance(days=3)
    assert await notify.dispatcher.settle_receipts() == 0
    assert await kept_receipts(mongo, notify) == []


async def test_the_same_early_receipt_at_once_is_kept_once(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    # A gateway retrying its callback while the first is in flight: FerretDB v1 lets
    # concurrent upserts of one _id both try the insert.
    for attempt in range(5):
        matched = await asyncio.gather(
            *(notify.conversations.receipt(f"twice-{attempt}", "failed", "x") for _ in range(6))
        )
        assert matched == [False] * 6
    kept = await kept_receipts(mongo, notify)
    assert sorted(k["_id"] for k in kept) == [f"fake:twice-{a}" for a in range(5)]
