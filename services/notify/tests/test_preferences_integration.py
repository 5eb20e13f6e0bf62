"""Opt-out records on the real MongoDB-protocol server: written through the unit of work,
and records of the previous version (no `version`) brought over at start-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lintas_shared.mongo import Document
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
