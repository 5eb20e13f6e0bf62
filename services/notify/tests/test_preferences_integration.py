"""Opt-out records on the real MongoDB-protocol server: written through the unit of work,
and records of the previous version (no `version`) brought over at start-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lintas_shared.events import SmsPreferenceTexted, make_event
from lintas_shared.mongo import Document
from lintas_shared.outbox import outbox_entry
from lintas_shared.topics import NOTIFICATIONS
from lintas_shared.unit_of_work import Write
from pymongo import AsyncMongoClient

from tests.support.notify import AT, Notify

pytestmark = pytest.mark.integration


async def test_a_record_of_the_previous_version_is_changed_after_start_up(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    preferences = mongo[notify.database]["preferences"]
    await preferences.insert_one(
        {"_id": "hash-old", "opted_out": True, "changed_at": AT, "channel": "sms", "outbox": []}
    )
    await notify.preferences.ensure_indexes()
    await notify.preferences.ensure_indexes()  # again: nothing more
    assert await notify.preferences.is_opted_out("hash-old")
    assert await notify.preferences.change("hash-old", False, AT + timedelta(hours=1), "api")
    assert not await notify.preferences.change("hash-old", True, AT, "sms")  # older: ignored
    stored = await preferences.find_one({"_id": "hash-old"})
    assert stored is not None
    assert (stored["opted_out"], stored["channel"], stored["version"]) == (False, "api", 2)
    # A phone never seen: an opt-in changes nothing, an opt-out is recorded.
    assert not await notify.preferences.change("hash-new", False, AT, "api")
    assert await notify.preferences.change("hash-new-2", True, AT, "sms")
    assert await notify.preferences.is_opted_out("hash-new-2")


def _announcement(case_id: str) -> Document:
    event = make_event(
        SmsPreferenceTexted(case_id=case_id, opted_out=True, changed_at=AT),
        source="/lintas/notify",
        subject=case_id,
    )
    return outbox_entry(NOTIFICATIONS, event)


async def test_erasing_a_case_keeps_the_outbox_emptied_from_the_front_only(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    # Review item 7: a relay holds the outbox [b, a, c]; case Y (entry a) is erased; a
    # writer adds d; the relay's clear of [b, a, c] must not take d with it.
    preferences = mongo[notify.database]["preferences"]
    b, a, c, d = (_announcement(x) for x in ("case-x", "case-y", "case-x", "case-x"))
    await preferences.insert_one(
        {"_id": "hash-1", "opted_out": True, "changed_at": AT, "channel": "sms", "version": 1}
        | {"outbox": [b, a, c], "outbox_since": AT}
    )
    snapshot = [b, a, c]
    await notify.preferences.forget_case("hash-1", "case-y")
    await preferences.update_one({"_id": "hash-1"}, {"$push": {"outbox": d}})
    assert not await notify.preferences.documents.clear_published("hash-1", snapshot)
    stored = await preferences.find_one({"_id": "hash-1"})
    assert stored is not None
    assert [e["id"] for e in stored["outbox"]] == [d["id"]]  # d waits for the relay


async def test_erasing_a_case_removes_its_announcements_at_the_front(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    preferences = mongo[notify.database]["preferences"]
    a1, a2, b = (_announcement(x) for x in ("case-y", "case-y", "case-x"))
    fields = {"opted_out": True, "changed_at": AT, "channel": "sms", "version": 1}
    await preferences.insert_one({"_id": "hash-1", **fields, "outbox": [a1, a2, b]})
    await preferences.insert_one({"_id": "hash-2", **fields, "outbox": [a1], "outbox_since": AT})
    await notify.preferences.forget_case("hash-1", "case-y")
    await notify.preferences.forget_case("hash-2", "case-y")
    one = await preferences.find_one({"_id": "hash-1"})
    two = await preferences.find_one({"_id": "hash-2"})
    assert one is not None
    assert two is not None
    assert [e["id"] for e in one["outbox"]] == [b["id"]]
    assert two["outbox"] == []
    assert "outbox_since" not in two  # no stale time on an empty outbox


async def test_a_change_decided_on_a_forgotten_record_cannot_land_on_its_successor(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    # The phone's last case is erased (its record deleted) while a change decided on the
    # record is in flight; the phone then comes back with a new case and a new record.
    preferences = mongo[notify.database]["preferences"]
    assert await notify.preferences.change("hash-back", True, AT, "sms")
    forgotten = await preferences.find_one({"_id": "hash-back"})
    assert forgotten is not None
    await notify.preferences.forget("hash-back")
    assert await notify.preferences.change("hash-back", True, AT + timedelta(days=1), "api")

    in_flight = Write(set={"opted_out": False, "channel": "stale"})
    assert not await notify.preferences.documents.write(
        "hash-back", forgotten["version"], in_flight
    )
    successor = await preferences.find_one({"_id": "hash-back"})
    assert successor is not None
    assert (successor["opted_out"], successor["channel"]) == (True, "api")
    assert successor["version"] != forgotten["version"]
