"""Conditional writes and reads by `_id` on the real server, from one client and from
several racing each other (as the services' instances do)."""

from __future__ import annotations

import asyncio

import pytest
from lintas_shared.mongo import Document, find_by_id, update_by_id
from pymongo import AsyncMongoClient

from tests.support.servers import Servers


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
async def test_version_checked_updates_from_three_clients_never_both_win(
    mongo: AsyncMongoClient[Document], database_name: str, servers: Servers
) -> None:
    # Optimistic concurrency across processes: read the version, write only if it is
    # unchanged. A lost update here once left cases without the status referral gave them.
    await mongo[database_name]["versioned"].insert_one({"_id": "d", "version": 0, "by": []})
    clients = [AsyncMongoClient[Document](servers.mongodb_uri) for _ in range(3)]
    wins: list[str] = []

    async def writer(client: AsyncMongoClient[Document], name: str) -> None:
        collection = client[database_name]["versioned"]
        for _ in range(100):
            doc = await collection.find_one({"_id": "d"})
            assert doc is not None
            seen = int(doc["version"])
            update = {"$set": {"version": seen + 1}, "$push": {"by": f"{name}@{seen}"}}
            if await update_by_id(collection, "d", update, where={"version": seen}):
                wins.append(f"{name}@{seen}")

    try:
        await asyncio.gather(*(writer(client, f"w{n}") for n, client in enumerate(clients)))
    finally:
        for client in clients:
            await client.close()

    doc = await mongo[database_name]["versioned"].find_one({"_id": "d"})
    assert doc is not None
    # One win per version, in order, each one kept: no lost update, no double win.
    assert [int(win.split("@")[1]) for win in doc["by"]] == list(range(len(wins)))
    assert sorted(doc["by"]) == sorted(wins)
    # Each failed attempt lost to a win after its read, and a win beats at most the two
    # other writers' attempts in flight: at least a third of the 300 attempts won.
    assert doc["version"] == len(wins) >= 100


@pytest.mark.integration
async def test_racing_upserts_of_one_new_id_from_several_clients_lose_nothing(
    mongo: AsyncMongoClient[Document], database_name: str, servers: Servers
) -> None:
    # MongoDB retries an upsert that lost the insert race on `_id` itself; the services
    # rely on it (a plain `update_one(upsert=True)`), so the local store must too.
    counts = mongo[database_name]["counts"]
    clients = [AsyncMongoClient[Document](servers.mongodb_uri) for _ in range(3)]
    try:
        for round_ in range(20):
            await asyncio.gather(
                *(
                    client[database_name]["counts"].update_one(
                        {"_id": f"c{round_}"}, {"$inc": {"n": 1}}, upsert=True
                    )
                    for client in clients
                    for _ in range(4)
                )
            )
    finally:
        for client in clients:
            await client.close()
    raced = [d["n"] async for d in counts.find({})]
    assert raced == [12] * 20
