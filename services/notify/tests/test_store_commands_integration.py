"""What notify asks the store for one case on the happy path (case submitted -> SMS
recorded as sent), counted by the services' own command counter on the real store."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lintas_notify.domain.message import SmsStatus
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import SmsSent, make_event
from lintas_shared.mongo import Document
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.notify import Notify, outgoing_sms

pytestmark = pytest.mark.integration
COLLECTIONS = ("case_keys", "cases", "preferences", "messages", "early_receipts")
COMMANDS = ("find", "insert", "update", "findAndModify", "delete", "aggregate", "count")


def counts() -> dict[tuple[str, str], float]:
    found = {}
    for collection in COLLECTIONS:
        for command in COMMANDS:
            value = REGISTRY.get_sample_value(
                "lintas_store_commands_total", {"collection": collection, "command": command}
            )
            found[collection, command] = value or 0.0
    return found


def hand_overs(notify: Notify) -> list[tuple[str, int, list[Document]]]:
    """What the messages' writes hand the outbox relay: (message id, version, outbox)."""
    handed: list[tuple[str, int, list[Document]]] = []
    notify.messages.on_commit(
        lambda doc_id, version, entries: handed.append((doc_id, version, entries))
    )
    return handed


def sms_sent(message_id: str, case_id: str, at: datetime) -> CloudEvent:
    """The `sms sent` event of a `case received` SMS."""
    payload = SmsSent(
        case_id=case_id, message_id=message_id, template="case_received", language="id", sent_at=at
    )
    return make_event(payload, source="/lintas/notify", subject=case_id)


async def test_a_case_costs_notify_six_commands_before_the_relay(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    key = await notify.vault.create("case-count")
    event = case_submitted("case-count", key=key)
    before = counts()
    await notify.handlers.on_case_submitted(event)
    after = counts()
    spent = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert [s.template for s in notify.provider.sent] == ["case_received"]
    # The relay's update emptying the outbox comes on top (not wired in these tests).
    assert spent == {
        ("case_keys", "find"): 1,  # the case key: phone hash, and the phone for the send
        ("cases", "insert"): 1,  # the profile
        ("preferences", "find"): 1,  # opt-out
        ("messages", "find"): 1,  # her sends in 24 hours (daily limit)
        ("messages", "insert"): 1,  # the record, born `sending`
        ("messages", "update"): 1,  # `sent`, with SmsSent in its outbox
    }


async def test_the_sends_of_a_batchs_cases_are_recorded_in_one_update_and_handed_to_the_relay(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    handed = hand_overs(notify)
    cases = [f"case-batch-{n}" for n in range(4)]
    events = [case_submitted(c, key=await notify.vault.create(c)) for c in cases]
    before = counts()
    await asyncio.gather(*(notify.handlers.on_case_submitted(e) for e in events))
    after = counts()
    assert len(notify.provider.sent) == 4
    assert after["messages", "update"] - before["messages", "update"] == 1
    assert after["messages", "findAndModify"] == before["messages", "findAndModify"]
    stored = {
        d["case_id"]: d
        async for d in mongo[notify.database]["messages"].find({"case_id": {"$in": cases}})
    }
    assert {c: d["status"] for c, d in stored.items()} == {c: "sent" for c in cases}
    # The relay gets each message's outbox as stored, at its version, without a read.
    assert sorted(handed, key=lambda h: h[0]) == sorted(
        ((d["_id"], d["version"], d["outbox"]) for d in stored.values()), key=lambda h: h[0]
    )
    assert all(len(entries) == 1 for _, _, entries in handed)


async def test_opt_outs_asked_side_by_side_are_one_query(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    await mongo[notify.database]["preferences"].insert_many(
        [
            {"_id": "hash-out", "opted_out": True, "version": 1},
            {"_id": "hash-in", "opted_out": False, "version": 1},
        ]
    )
    before = counts()
    asked = ("hash-out", "hash-in", "hash-unknown", "hash-out")
    got = await asyncio.gather(*(notify.preferences.is_opted_out(h) for h in asked))
    after = counts()
    assert got == [True, False, False, True]
    assert after["preferences", "find"] - before["preferences", "find"] == 1
    # One after another, each is its own query, as a lone send's is.
    assert await notify.preferences.is_opted_out("hash-out")
    assert not await notify.preferences.is_opted_out("hash-in")
    assert counts()["preferences", "find"] - before["preferences", "find"] == 3


async def test_recent_sends_asked_side_by_side_are_one_query(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    def message(n: int, phone: str, hours_ago: int, field: str) -> Document:
        at = now - timedelta(hours=hours_ago)
        return {"_id": f"m{n}", "phone_hash": phone, "kind": "notification", field: at}

    await mongo[notify.database]["messages"].insert_many(
        [
            message(1, "phone-a", 1, "counted_at"),
            message(2, "phone-a", 30, "sent_at"),  # outside a day
            message(3, "phone-b", 5, "sent_at"),  # a record of the previous version
            message(4, "phone-b", 20, "counted_at"),
            {**message(5, "phone-a", 2, "counted_at"), "kind": "reply"},  # not counted
        ]
    )
    day, hour6 = now - timedelta(hours=24), now - timedelta(hours=6)
    asked = [("phone-a", day), ("phone-b", day), ("phone-b", hour6), ("phone-c", day)]
    alone = [sorted(await notify.messages.sent_times(p, since)) for p, since in asked]
    before = counts()
    together = await asyncio.gather(*(notify.messages.sent_times(p, s) for p, s in asked))

    assert counts()["messages", "find"] - before["messages", "find"] == 1
    assert [sorted(times) for times in together] == alone
    assert [len(times) for times in alone] == [1, 2, 1, 0]


async def test_a_message_changed_since_its_sender_read_it_is_recorded_with_its_outbox_read(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    handed = hand_overs(notify)
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    doc, created = await notify.messages.schedule(
        outgoing_sms("sms-stale", "LB-STALE"), now, SmsStatus.SENDING
    )
    assert created
    # A failed attempt and the next one, held by the same claim: the version moves on.
    assert await notify.messages.note_attempt(
        "sms-stale", now, "timeout", another=True, claim=doc["claim_id"]
    )
    sent = sms_sent("sms-stale", "case-sms-stale", now)
    before = counts()
    assert await notify.messages.finish(
        "sms-stale",
        SmsStatus.SENT,
        now,
        from_statuses=[SmsStatus.SENDING],
        provider_message_id="provider-1",
        events=[sent],
        version=doc["version"],
    )
    after = counts()
    # Tried at the version read (no match), then recorded with its outbox read back.
    assert after["messages", "update"] - before["messages", "update"] == 1
    assert after["messages", "findAndModify"] - before["messages", "findAndModify"] == 1
    stored = await mongo[notify.database]["messages"].find_one({"_id": "sms-stale"})
    assert stored is not None
    assert stored["status"] == "sent"
    assert stored["version"] == doc["version"] + 2
    assert handed == [("sms-stale", stored["version"], stored["outbox"])]
    assert [e["id"] for e in stored["outbox"]] == [sent.id]


async def test_one_send_recorded_twice_side_by_side_is_recorded_and_handed_over_once(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    # Two processes that found the same send at the provider record it with the same
    # provider id; here both in one batch, with another message beside them.
    handed = hand_overs(notify)
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    docs = [
        (await notify.messages.schedule(outgoing_sms(m, f"LB-{m}"), now, SmsStatus.SENDING))[0]
        for m in ("sms-twice", "sms-beside")
    ]

    def record(doc: Document) -> Coroutine[Any, Any, bool]:
        event = sms_sent(doc["_id"], doc["case_id"], now)
        return notify.messages.finish(
            doc["_id"],
            SmsStatus.SENT,
            now,
            from_statuses=[SmsStatus.SENDING],
            provider_message_id=f"provider-{doc['_id']}",
            events=[event],
            version=doc["version"],
        )

    got = await asyncio.gather(record(docs[0]), record(docs[0]), record(docs[1]))
    assert sorted(got[:2]) == [False, True]
    assert got[2] is True
    stored = {
        d["_id"]: d
        async for d in mongo[notify.database]["messages"].find(
            {"_id": {"$in": ["sms-twice", "sms-beside"]}}
        )
    }
    assert [h["status"] for h in stored["sms-twice"]["status_history"]].count("sent") == 1
    assert sorted(handed) == sorted((d["_id"], d["version"], d["outbox"]) for d in stored.values())
