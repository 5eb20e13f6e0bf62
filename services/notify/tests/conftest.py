"""Notify's use cases wired to a fresh database on the real MongoDB-protocol server."""

from __future__ import annotations

import pytest
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.notify import Notify, wire_notify


@pytest.fixture
async def notify(mongo: AsyncMongoClient[Document], database_name: str) -> Notify:
    """Notify's parts on a fresh test database, with a fake provider and a set clock."""
    return await wire_notify(mongo, database_name)
