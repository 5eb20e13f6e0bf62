"""MongoDB client factory (PyMongo's native async API) and store-error classification."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
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


# --- conditional writes that stay on the `_id` index --------------------------------------
#
# FerretDB v1 turns a filter into SQL only when it is `{"_id": <string>}` alone; any other
# filter, even `{"_id": x, "version": 3}`, makes it read and decode every document of the
# collection and match them in Go, then write the one it found. That is a read followed
# by a write anyway (FerretDB v1 has no atomic conditional update), so on FerretDB the
# condition is checked here on a read by `_id`, and the write goes by `_id` alone: the
# same guarantee, without reading the whole collection. On MongoDB the condition stays in
# the filter, where the server applies it atomically.

_flavours: dict[int, bool] = {}


async def is_ferretdb(client: AsyncMongoClient[Document]) -> bool:
    """Whether the server is FerretDB (its buildInfo says so); asked once per client."""
    key = id(client)
    if key not in _flavours:
        info = await client.admin.command("buildInfo")
        # FerretDB v1.24 answers with `ferretdbVersion` and `ferretdbFeatures`.
        _flavours[key] = any(str(field).lower().startswith("ferretdb") for field in info)
    return _flavours[key]


def _comparable(value: Any) -> Any:
    # BSON keeps milliseconds: compare as the server would after a round trip.
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def _matches_one(present: bool, value: Any, condition: Any) -> bool:
    if not (isinstance(condition, Mapping) and condition and next(iter(condition)).startswith("$")):
        return bool((value if present else None) == _comparable(condition))
    for op, operand in condition.items():
        expected = _comparable(operand)
        if op == "$ne":
            ok = (value if present else None) != expected
        elif op == "$in":
            ok = (value if present else None) in [_comparable(o) for o in operand]
        elif not present or value is None:
            ok = False
        elif op == "$lt":
            ok = value < expected
        elif op == "$lte":
            ok = value <= expected
        elif op == "$gt":
            ok = value > expected
        elif op == "$gte":
            ok = value >= expected
        else:
            raise ValueError(f"unsupported condition operator {op}")
        if not ok:
            return False
    return True


def matches(doc: Document, where: Mapping[str, Any]) -> bool:
    """Whether `doc` satisfies `where` (top-level fields; equality, $ne, $in, $lt(e), $gt(e)),
    as MongoDB would judge it."""
    return all(
        _matches_one(field in doc, _comparable(doc.get(field)), condition)
        for field, condition in where.items()
    )


async def update_by_id(
    collection: AsyncCollection[Document],
    doc_id: Any,
    update: Document,
    *,
    where: Mapping[str, Any] | None = None,
    upsert: bool = False,
) -> bool:
    """Apply `update` to the document `doc_id` if it satisfies `where`; True if it did
    (or, with `upsert`, inserted it). See the note above on FerretDB."""
    if where and await is_ferretdb(collection.database.client):
        current = await collection.find_one({"_id": doc_id}, {field: 1 for field in where})
        if current is None:
            if not upsert:
                return False
        elif not matches(current, where):
            return False
        where = None
    result = await collection.update_one({"_id": doc_id, **(where or {})}, update, upsert=upsert)
    return result.matched_count == 1 or result.upserted_id is not None


async def find_by_id(
    collection: AsyncCollection[Document],
    doc_id: Any,
    *,
    where: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> Document | None:
    """The document `doc_id` if it satisfies `where`: read by `_id` alone, so FerretDB
    uses its index, and checked here."""
    doc = await collection.find_one({"_id": doc_id}, projection)
    if doc is None or (where and not matches(doc, where)):
        return None
    return doc
