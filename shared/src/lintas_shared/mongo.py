"""MongoDB client factory (PyMongo's native async API) and store-error classification."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)

Document = dict[str, Any]

#: Errors that mean "the store is unreachable right now", never "this input is bad".
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)


def make_mongo_client(uri: str, *, app_name: str) -> AsyncMongoClient[Document]:
    """Build a client; it connects lazily, so build it at start-up, never at import."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
    )


async def ping(client: AsyncMongoClient[Document]) -> bool:
    """True when the store answers."""
    try:
        await client.admin.command("ping")
    except TRANSIENT_STORE_ERRORS:
        return False
    return True
