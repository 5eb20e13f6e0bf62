"""Fixtures for every test tier: real servers, fresh databases, topics."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_access import apply_acls
from lintas_shared.kafka_auth import ADMIN_PRINCIPAL, client_auth
from lintas_shared.mongo import Document, make_mongo_client
from lintas_shared.topics import ALL_TOPICS
from pymongo import AsyncMongoClient

from tests.support.servers import Servers, provide_servers

# The tests run the dev stack: they say so, as nothing defaults to it (the services'
# settings refuse placeholder and short secrets anywhere else).
os.environ["LINTAS_ENVIRONMENT"] = "dev"
# Tests and the services they build in-process log in to Kafka as the admin (their
# groups and topics are their own); the e2e stack's services each as their own principal.
os.environ.setdefault("LINTAS_KAFKA_USERNAME", ADMIN_PRINCIPAL)

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
        asyncio.run(apply_acls(found.kafka_bootstrap, client_auth()))
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
