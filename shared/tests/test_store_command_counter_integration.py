"""Every client the services make counts the commands it sends, by collection and command,
on the real store (`lintas_store_commands_total`): `make bench` reads them per service."""

from __future__ import annotations

import uuid

import pytest
from lintas_shared.mongo import make_mongo_client
from prometheus_client import REGISTRY

from tests.support.servers import Servers

pytestmark = pytest.mark.integration


def _count(collection: str, command: str) -> float:
    value = REGISTRY.get_sample_value(
        "lintas_store_commands_total", {"collection": collection, "command": command}
    )
    return value or 0.0


async def test_commands_are_counted_by_collection_and_command(servers: Servers) -> None:
    run = uuid.uuid4().hex[:8]
    database, collection = f"counted_{run}", f"counted_things_{run}"
    client = make_mongo_client(servers.mongodb_uri, app_name="test")
    try:
        things = client[database][collection]
        await things.insert_one({"_id": "a", "n": 1})
        await things.update_one({"_id": "a"}, {"$inc": {"n": 1}})
        await things.find_one_and_update({"_id": "a"}, {"$inc": {"n": 1}})
        assert [doc async for doc in things.find({})] == [{"_id": "a", "n": 3}]
        await client.admin.command("ping")

        assert _count(collection, "insert") == 1
        assert _count(collection, "update") == 1
        assert _count(collection, "findAndModify") == 1
        assert _count(collection, "find") == 1
        ping = {"collection": "-", "command": "ping"}  # connection upkeep is not work
        assert REGISTRY.get_sample_value("lintas_store_commands_total", ping) is None
    finally:
        await client.drop_database(database)
        await client.close()
