"""Events kept until their case is known, found by the case's list (real MongoDB-protocol
server): never by reading every waiting event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lintas_notify.adapters.early_events import MongoEarlyEvents
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.notify import AT, Notify, referral_accepted, referral_offered

pytestmark = pytest.mark.integration


def store(mongo: AsyncMongoClient[Document], notify: Notify) -> MongoEarlyEvents:
    return MongoEarlyEvents(mongo[notify.database]["early_events"])


async def test_each_case_gets_its_own_events_oldest_first(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    early = store(mongo, notify)
    accepted, offered = referral_accepted("case-a"), referral_offered("case-a")
    await early.keep("case-a", accepted, AT + timedelta(seconds=2))
    await early.keep("case-a", offered, AT)
    await early.keep("case-a", offered, AT + timedelta(seconds=5))  # redelivered: once
    other = referral_accepted("case-b")
    await early.keep("case-b", other, AT)
    assert [e.dedupe_key for e in await early.for_case("case-a")] == [
        offered.dedupe_key,
        accepted.dedupe_key,
    ]
    assert [e.dedupe_key for e in await early.for_case("case-b")] == [other.dedupe_key]
    assert await early.for_case("case-c") == []

    await early.done(offered)
    await early.done(offered)  # a second handling changes nothing
    assert [e.dedupe_key for e in await early.for_case("case-a")] == [accepted.dedupe_key]
    await early.done(accepted)
    assert await early.for_case("case-a") == []
    lists = mongo[notify.database]["early_events_by_case"]
    assert await lists.find_one({"_id": "case-a"}) is None  # an emptied list goes
    assert await lists.find_one({"_id": "case-b"}) is not None


async def test_erasure_drops_the_events_and_the_list(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    early = store(mongo, notify)
    await early.keep("case-e", referral_offered("case-e"), AT)
    await early.keep("case-e", referral_accepted("case-e"), AT)
    await early.drop_case("case-e")
    database = mongo[notify.database]
    assert await database["early_events"].count_documents({"case_id": "case-e"}) == 0
    assert await database["early_events_by_case"].find_one({"_id": "case-e"}) is None


async def test_events_kept_before_the_lists_existed_are_listed_at_start(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    early = store(mongo, notify)
    event = referral_accepted("case-old")
    await mongo[notify.database]["early_events"].insert_one(
        {
            "_id": event.dedupe_key,
            "case_id": "case-old",
            "event": event.model_dump(mode="json"),
            "kept_at": AT,
        }
    )
    assert await early.for_case("case-old") == []  # not listed yet
    await early.ensure_indexes()
    await early.ensure_indexes()  # again: listed once
    assert [e.dedupe_key for e in await early.for_case("case-old")] == [event.dedupe_key]
    listing = await mongo[notify.database]["early_events_by_case"].find_one({"_id": "case-old"})
    assert listing is not None
    assert listing["keys"] == [event.dedupe_key]


async def test_a_listed_key_whose_event_was_never_kept_is_passed_over(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    # A crash between listing the key and keeping the event.
    early = store(mongo, notify)
    await mongo[notify.database]["early_events_by_case"].insert_one(
        {"_id": "case-crash", "keys": ["lost-key"]}
    )
    event = referral_offered("case-crash")
    await early.keep("case-crash", event, AT)
    assert [e.dedupe_key for e in await early.for_case("case-crash")] == [event.dedupe_key]
