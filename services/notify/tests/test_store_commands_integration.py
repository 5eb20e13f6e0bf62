"""What notify asks the store for one case on the happy path (case submitted -> SMS
recorded as sent), counted by the services' own command counter on the real store."""

from __future__ import annotations

import asyncio

import pytest
from lintas_shared.mongo import Document
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.notify import Notify

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
        ("messages", "findAndModify"): 1,  # `sent`, with SmsSent in its outbox
    }


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
