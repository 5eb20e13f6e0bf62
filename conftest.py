"""Fixtures for every test tier: real servers, fresh databases, topics."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from lintas_shared.kafka import ensure_topics
from lintas_shared.mongo import Document, make_mongo_client
from lintas_shared.topics import ALL_TOPICS
from pymongo import AsyncMongoClient

from tests.support.servers import Servers, provide_servers

# The browser fixtures (`browser`, `browser_context`, `page`) for any test tier.
pytest_plugins = ("tests.support.browser",)


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """A real Kafka broker and MongoDB-protocol server for this session, with topics."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def progress(message: str) -> None:
        # Past pytest's capture: a cold first run provisions for a minute or more.
        with capture.global_and_fixture_disabled():
            print(f"\n[lintas test servers] {message}", file=sys.stderr, flush=True)

    with provide_servers(progress) as found:
        asyncio.run(ensure_topics(found.kafka_bootstrap, ALL_TOPICS, partitions=3))
        yield found


@pytest.fixture
async def mongo(servers: Servers) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A client of the test store."""
    client = make_mongo_client(servers.mongodb_uri, app_name="lintas-tests")
    yield client
    await client.close()


@pytest.fixture
async def database_name(mongo: AsyncMongoClient[Document]) -> AsyncIterator[str]:
    """A fresh database name, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    await mongo.drop_database(name)
