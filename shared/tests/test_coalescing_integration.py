"""Inserts asked for side by side go to the real store as one command, and each caller
gets what its own `insert_one` would have."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from lintas_shared.mongo import (
    COMMAND_SIZE,
    CoalescingInserter,
    CoalescingUpdater,
    Document,
    make_mongo_client,
)
from prometheus_client import REGISTRY
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from tests.support.servers import Servers

pytestmark = pytest.mark.integration


def _commands(collection: str, command: str) -> float:
    value = REGISTRY.get_sample_value(
        "lintas_store_commands_total", {"collection": collection, "command": command}
    )
    return value or 0.0


@pytest.fixture
async def database(servers: Servers) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database of its own on the real store, dropped afterwards."""
    client = make_mongo_client(servers.mongodb_uri, app_name="test")
    name = f"coalesced_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def test_inserts_made_side_by_side_are_one_command_each_with_its_own_answer(
    database: AsyncDatabase[Document],
) -> None:
    name = f"things_{uuid.uuid4().hex[:8]}"
    things = database[name]
    await things.create_index([("code", ASCENDING)], unique=True, name="code_unique")
    await things.insert_one({"_id": "taken", "code": "taken-code"})
    inserter = CoalescingInserter(things)
    fresh = [{"_id": f"t{n}", "code": f"code-{n}"} for n in range(COMMAND_SIZE + 3)]
    refused = [{"_id": "taken", "code": "other"}, {"_id": "new", "code": "taken-code"}]
    before = _commands(name, "insert")

    got = await asyncio.gather(
        *(inserter.insert_one(doc) for doc in [*fresh, *refused]), return_exceptions=True
    )

    assert got[: len(fresh)] == [None] * len(fresh)
    assert [type(e) for e in got[len(fresh) :]] == [DuplicateKeyError, DuplicateKeyError]
    # The error names no document: its text goes to logs and dead letters.
    for error in got[len(fresh) :]:
        assert isinstance(error, DuplicateKeyError)
        assert "op" not in (error.details or {})
        assert "other" not in str(error)
    assert _commands(name, "insert") - before == 2  # 25 and the rest
    stored = {doc["_id"]: doc["code"] async for doc in things.find({})}
    assert stored == {"taken": "taken-code", **{d["_id"]: d["code"] for d in fresh}}
    # One alone is one command too, and answers as insert_one does.
    with pytest.raises(DuplicateKeyError):
        await inserter.insert_one({"_id": "t0", "code": "again"})
    assert _commands(name, "insert") - before == 3


async def test_updates_made_side_by_side_are_one_command_each_learning_if_it_matched(
    database: AsyncDatabase[Document],
) -> None:
    name = f"stages_{uuid.uuid4().hex[:8]}"
    stages = database[name]
    await stages.insert_many([{"_id": f"c{n}", "at": 1, "stage": "new"} for n in range(6)])
    updater = CoalescingUpdater(stages)

    def move(doc_id: str, at: int) -> Coroutine[Any, Any, bool]:
        return updater.update_one(
            {"_id": doc_id, "at": {"$lte": at}}, {"$set": {"stage": f"at-{at}", "at": at}}
        )

    before = _commands(name, "update")
    assert await asyncio.gather(*(move(f"c{n}", 2) for n in range(6))) == [True] * 6
    assert _commands(name, "update") - before == 1

    # One misses (no such document), one is refused (a condition the store rejects):
    # each caller gets its own answer, the others' updates are made.
    before = _commands(name, "update")
    got = await asyncio.gather(
        move("c0", 3),
        move("missing", 3),
        updater.update_one({"_id": "c1", "$where": "x"}, {"$set": {"stage": "never"}}),
        move("c2", 3),
        return_exceptions=True,
    )
    assert got[:2] == [True, False]
    assert isinstance(got[2], OperationFailure)
    assert got[3] is True
    stored = {doc["_id"]: doc["stage"] async for doc in stages.find({})}
    assert stored == {
        "c0": "at-3",
        "c1": "at-2",
        "c2": "at-3",
        **{f"c{n}": "at-2" for n in range(3, 6)},
    }
    # The batch, then each again on its own to learn which matched.
    assert _commands(name, "update") - before > 1


async def test_moves_side_by_side_are_one_command_and_learn_by_their_mark_if_made(
    database: AsyncDatabase[Document],
) -> None:
    name = f"moves_{uuid.uuid4().hex[:8]}"
    messages = database[name]
    await messages.insert_many([{"_id": f"m{n}", "status": "sending"} for n in range(5)])
    await messages.update_one({"_id": "m1"}, {"$set": {"status": "failed"}})  # moved before
    updater = CoalescingUpdater(messages)

    def record_sent(doc_id: str, receipt: str) -> Coroutine[Any, Any, bool]:
        # Not idempotent: made once, its filter no longer holds.
        return updater.update_one(
            {"_id": doc_id, "status": "sending"},
            {"$set": {"status": "sent", "receipt": receipt}, "$inc": {"n": 1}},
            made_if={"receipt": receipt},
        )

    before, read_before = _commands(name, "update"), _commands(name, "find")
    got = await asyncio.gather(*(record_sent(f"m{n}", f"r{n}") for n in range(5)))
    assert got == [True, False, True, True, True]
    # The batch, then one read of the batch's documents to learn which were made: made
    # again, the moves would have matched nothing.
    assert _commands(name, "update") - before == 1
    assert _commands(name, "find") - read_before == 1
    stored = {d["_id"]: (d["status"], d.get("n")) async for d in messages.find({})}
    assert stored == {
        "m0": ("sent", 1),
        "m1": ("failed", None),
        **{f"m{n}": ("sent", 1) for n in range(2, 5)},
    }

    # The same move asked twice in one batch: made once, and only one caller says so.
    await messages.insert_one({"_id": "twice", "status": "sending"})
    got = await asyncio.gather(record_sent("twice", "t1"), record_sent("twice", "t2"))
    assert sorted(got) == [False, True]
    twice = await messages.find_one({"_id": "twice"})
    assert twice is not None
    assert twice["n"] == 1
    assert twice["receipt"] == ("t1" if got[0] else "t2")

    # A refused move fails its own caller; the others learn by their mark (the local
    # store stops the command at the refusal, MongoDB goes on past it).
    await messages.insert_many([{"_id": f"k{n}", "status": "sending"} for n in range(3)])
    got = await asyncio.gather(
        record_sent("k0", "s0"),
        updater.update_one(
            {"_id": "k1", "$where": "x"}, {"$set": {"status": "never"}}, made_if={"x": 1}
        ),
        record_sent("k2", "s2"),
        return_exceptions=True,
    )
    assert got[0] is True
    assert isinstance(got[1], OperationFailure)
    assert got[2] is True
    stored = {
        d["_id"]: (d["status"], d.get("n"))
        async for d in messages.find({"_id": {"$in": ["k0", "k1", "k2"]}})
    }
    assert stored == {"k0": ("sent", 1), "k1": ("sending", None), "k2": ("sent", 1)}
