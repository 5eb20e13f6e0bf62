"""Conditional writes by `_id`: the condition judged as MongoDB would, on the real server.

On FerretDB the condition is checked on a read by `_id` (so its index serves it) and the
write goes by `_id` alone; on MongoDB it stays in the filter. Either way the outcome
below must be the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.mongo import Document, find_by_id, is_ferretdb, matches, update_by_id
from pymongo import AsyncMongoClient

from tests.support.servers import Servers

AT = datetime(2026, 11, 23, 10, 0, 0, 123_456, tzinfo=UTC)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("doc", "where", "expected"),
    [
        ({"version": 3}, {"version": 3}, True),
        ({"version": 3}, {"version": 4}, False),
        ({}, {"version": 3}, False),
        ({}, {"opted_out": {"$ne": True}}, True),  # a missing field is "not equal"
        ({"opted_out": True}, {"opted_out": {"$ne": True}}, False),
        ({"status": "sent"}, {"status": {"$in": ["sending", "sent"]}}, True),
        ({"status": "failed"}, {"status": {"$in": ["sending", "sent"]}}, False),
        ({}, {"changed_at": {"$lt": AT}}, False),  # a missing field is not less than anything
        ({"changed_at": AT - timedelta(seconds=1)}, {"changed_at": {"$lt": AT}}, True),
        # Stored values keep milliseconds: the same instant read back is not "less".
        ({"changed_at": AT.replace(microsecond=123_000)}, {"changed_at": {"$lt": AT}}, False),
        ({"changed_at": AT.replace(microsecond=123_000)}, {"changed_at": {"$lte": AT}}, True),
        ({"n": 5}, {"n": {"$gt": 4, "$lte": 5}}, True),
        ({"n": 5}, {"n": {"$gte": 6}}, False),
        ({"erased": False, "stage_at": AT}, {"erased": False, "stage_at": {"$lte": AT}}, True),
    ],
)
def test_conditions_are_judged_as_mongodb_would(
    doc: Document, where: Document, expected: bool
) -> None:
    assert matches(doc, where) is expected


@pytest.mark.unit
def test_an_unknown_operator_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$regex"):
        matches({"name": "x"}, {"name": {"$regex": "x"}})


@pytest.mark.integration
async def test_update_by_id_applies_only_when_the_condition_holds(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["docs"]
    await collection.insert_many([{"_id": f"d{n}", "version": n} for n in range(50)])

    assert await update_by_id(collection, "d42", {"$set": {"v": 1}}, where={"version": 42})
    assert not await update_by_id(collection, "d42", {"$set": {"v": 2}}, where={"version": 41})
    assert not await update_by_id(collection, "nope", {"$set": {"v": 3}}, where={"version": 0})
    assert await update_by_id(collection, "d7", {"$inc": {"version": 1}})
    assert await update_by_id(collection, "new", {"$set": {"v": 4}}, upsert=True)

    assert await collection.find_one({"_id": "d42"}) == {"_id": "d42", "version": 42, "v": 1}
    assert (await collection.find_one({"_id": "d7"}) or {})["version"] == 8
    assert await collection.find_one({"_id": "nope"}) is None
    assert await collection.find_one({"_id": "new"}) == {"_id": "new", "v": 4}


@pytest.mark.integration
async def test_find_by_id_returns_the_document_only_when_it_matches(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["docs"]
    await collection.insert_one({"_id": "case-1", "organisation_id": "org-a", "x": 1})

    found = await find_by_id(collection, "case-1", where={"organisation_id": "org-a"})
    assert found == {"_id": "case-1", "organisation_id": "org-a", "x": 1}
    assert await find_by_id(collection, "case-1", where={"organisation_id": "org-b"}) is None
    assert await find_by_id(collection, "case-2") is None


@pytest.mark.integration
async def test_the_server_flavour_is_recognised(
    mongo: AsyncMongoClient[Document], servers: Servers
) -> None:
    # The FerretDB path (condition checked on an indexed read) must really be taken there:
    # a missed detection made every conditional update read the whole collection.
    if servers.origin == "local launcher":  # the project's FerretDB, never MongoDB
        assert await is_ferretdb(mongo)
    elif servers.origin == "testcontainers":  # the mongo:7 image
        assert not await is_ferretdb(mongo)
    else:  # servers given by the environment: whatever they are, it must agree
        info = await mongo.admin.command("buildInfo")
        assert await is_ferretdb(mongo) is ("ferretdbVersion" in info)
