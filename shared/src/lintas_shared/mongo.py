"""MongoDB client factory (PyMongo's native async API) and store-error classification."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any, Generic, TypeVar

from prometheus_client import Counter
from pymongo import AsyncMongoClient, UpdateOne, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from lintas_shared.metrics import STORE_COMMANDS

Document = dict[str, Any]


def copy_document(doc: Mapping[str, Any]) -> Document:
    """A copy of a document's dicts and lists (tuples become lists, as BSON stores
    them); other values are shared, being immutable as BSON decodes them (str, numbers,
    datetime, bytes, ObjectId). On a new case's document 16 us, against 63 for
    `copy.deepcopy` (on which the unit of work's hot path spent several percent of
    intake's CPU) and 41 when each value was tried with `isinstance` first."""
    return {k: _copy_value(v) for k, v in doc.items()}


def record_fields(record: Any) -> Document:
    """A flat dataclass record's fields as a document, its values shared (a record's
    fields hold immutable values: str, numbers, datetime, tuples). `dataclasses.asdict`
    deep-copies every value, datetimes included: 13% of intake's CPU in an import went
    to it, for case timelines."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


#: What BSON decodes to most often and a copy shares, told apart by their exact type:
#: an `isinstance` check against the `Mapping` ABC costs more than the copy of a string.
_SHARED_TYPES = frozenset({str, int, float, bool, type(None), datetime, bytes})


def _copy_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _copy_value(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_copy_value(v) for v in value]
    if kind in _SHARED_TYPES:
        return value
    if isinstance(value, Mapping):  # another mapping (SON, a subclass of dict)
        return {k: _copy_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_value(v) for v in value]
    return value


#: Errors that mean "the store is unreachable right now", never "this input is bad".
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (
    AutoReconnect,
    ConnectionFailure,
    NetworkTimeout,
    ServerSelectionTimeoutError,
)


#: Commands that keep a connection going rather than do work; not counted.
UPKEEP_COMMANDS = frozenset(
    {
        "hello",
        "ismaster",
        "isMaster",
        "ping",
        "buildInfo",
        "buildinfo",
        "endSessions",
        "saslStart",
        "saslContinue",
        "getParameter",
        "serverStatus",
    }
)


class StoreCommandCounter(monitoring.CommandListener):
    """Counts each command a client sends, by collection and command name
    (`lintas_store_commands_total`), so the cost of a case can be told per service and
    per step, not only as the server's total."""

    def __init__(self) -> None:
        # (collection, command) -> its counter: `labels` validates and locks on every
        # call, 2% of intake's CPU when asked for each command sent.
        self._counters: dict[tuple[str, str], Counter] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Count the command as it is sent."""
        name = event.command_name
        if name in UPKEEP_COMMANDS:
            return
        target = event.command.get(name)
        if name == "getMore":
            target = event.command.get("collection")
        collection = target if isinstance(target, str) else "-"
        counter = self._counters.get((collection, name))
        if counter is None:
            counter = self._counters[(collection, name)] = STORE_COMMANDS.labels(collection, name)
        counter.inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to do: counted when sent."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to do: counted when sent."""


_COUNTER = StoreCommandCounter()


def make_mongo_client(uri: str, *, app_name: str) -> AsyncMongoClient[Document]:
    """Build a client; it connects lazily, so build it at start-up, never at import."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5_000,
        connectTimeoutMS=5_000,
        event_listeners=[_COUNTER],
    )


async def ping(client: AsyncMongoClient[Document]) -> bool:
    """True when the store answers."""
    try:
        await client.admin.command("ping")
    except TRANSIENT_STORE_ERRORS:
        return False
    return True


# --- writes and reads of one document by `_id`, with a condition ------------------------
#
# The condition stays in the filter, where the server applies it atomically (on the local
# FerretDB too: deploy/README.md, FerretDB facts).


async def update_by_id(
    collection: AsyncCollection[Document],
    doc_id: Any,
    update: Document,
    *,
    where: Mapping[str, Any] | None = None,
    upsert: bool = False,
) -> bool:
    """Apply `update` to the document `doc_id` if it satisfies `where`; True if it did
    (or, with `upsert`, inserted it)."""
    result = await collection.update_one({"_id": doc_id, **(where or {})}, update, upsert=upsert)
    return result.matched_count == 1 or result.upserted_id is not None


async def find_by_id(
    collection: AsyncCollection[Document],
    doc_id: Any,
    *,
    where: Mapping[str, Any] | None = None,
    projection: Mapping[str, Any] | None = None,
) -> Document | None:
    """The document `doc_id` if it satisfies `where`, else None."""
    return await collection.find_one({"_id": doc_id, **(where or {})}, projection)


T = TypeVar("T")
R = TypeVar("R")


class TurnBatcher(Generic[T, R]):
    """Serves the calls made in the same turn of the event loop with one call of `run`.

    A consumer handles a batch's cases side by side, and their handlers reach the same
    step (a read by `_id`, an insert, an update) in the same turn: one store command for
    them all instead of one a case. `run` gets the items in the order they were asked for
    and returns one result for each, or an exception for that caller alone. When `run`
    fails as a whole, a store that cannot be reached fails every call it carried (each
    caller's retry decides); any other failure (one item the driver or the store refused)
    runs each item again on its own, so it fails its own call only.
    """

    def __init__(
        self, run: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]], size: int
    ) -> None:
        """`size`: the items one `run` gets at most (more go to several)."""
        self._run = run
        self._size = size
        # The calls not sent yet, by event loop: a loop that stops before sending its
        # calls (a test's, at its end) must not hold back another loop's.
        self._waiting: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[T, asyncio.Future[R]]]
        ] = weakref.WeakKeyDictionary()
        # The runs under way: the event loop keeps only weak references to tasks.
        self._runs: set[asyncio.Task[None]] = set()

    async def call(self, item: T) -> R:
        """`item`'s result, from the run that carries it. A caller cancelled while its
        item waits does not withdraw it: the run may still write it."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            # Runs after every task already ready in this turn has made its call; in a
            # context of its own: the run serves many cases, not the first caller's (its
            # log fields, its span).
            loop.call_soon(self._start, loop, context=contextvars.Context())
        answer: asyncio.Future[R] = loop.create_future()
        waiting.append((item, answer))
        return await answer

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop, [])
        for start in range(0, len(waiting), self._size):
            run = loop.create_task(self._serve(waiting[start : start + self._size]))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    async def _serve(self, calls: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._results([item for item, _ in calls])
            for (_, answer), result in zip(calls, results, strict=True):
                if answer.done():
                    continue
                if isinstance(result, BaseException):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)
        except asyncio.CancelledError:
            for _, answer in calls:
                answer.cancel()
            raise
        except BaseException as exc:
            for _, answer in calls:
                if not answer.done():
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            # No caller waits for ever, whatever went wrong above.
            for _, answer in calls:
                if not answer.done():
                    answer.set_exception(RuntimeError("the store command gave no answer"))

    async def _results(self, items: list[T]) -> Sequence[R | BaseException]:
        try:
            return await self._run(items)
        except Exception as exc:
            if len(items) == 1 or isinstance(exc, TRANSIENT_STORE_ERRORS):
                raise
        return [await self._alone(item) for item in items]

    async def _alone(self, item: T) -> R | BaseException:
        try:
            return (await self._run([item]))[0]
        except Exception as exc:
            return exc


class CoalescingReader:
    """Reads documents of one collection by `_id`; the reads asked for in the same turn
    of the event loop go to the store as one `{_id: {$in: [...]}}` query.

    Each caller gets the document as the store held it when that query ran, as its own
    `find_one` would have; a failed query fails every read it carried.
    """

    #: Ids a single query asks for at most (a batch holds up to 100 records).
    QUERY_SIZE = 200

    def __init__(
        self, collection: AsyncCollection[Document], projection: Mapping[str, Any] | None = None
    ) -> None:
        """`projection`: the fields every read of this reader asks for (None: all)."""
        self._collection = collection
        self._projection = projection
        self._reads: TurnBatcher[Any, Document | None] = TurnBatcher(self._query, self.QUERY_SIZE)

    async def find(self, doc_id: Any) -> Document | None:
        """The document `doc_id`, or None."""
        return await self._reads.call(doc_id)

    async def _query(self, ids: list[Any]) -> list[Document | None]:
        unique = list(dict.fromkeys(ids))
        only = {"_id": unique[0]} if len(unique) == 1 else {"_id": {"$in": unique}}
        found = {doc["_id"]: doc async for doc in self._collection.find(only, self._projection)}
        answers: list[Document | None] = []
        given: set[Any] = set()
        for doc_id in ids:
            doc = found.get(doc_id)
            # Callers of one id each get their own copy to change.
            answers.append(doc if doc is None or doc_id not in given else copy_document(doc))
            given.add(doc_id)
        return answers


#: Documents one bulk command writes at most (a relay's clears, a batch's inserts and
#: event changes). The local store holds a write lock on the collection for a whole
#: command (deploy/README.md), so commands of 200-400 held intake's `cases` for 3-4 s each
#: and the import's inserts waited behind them (2,000 rows: 114 rows/s; 281-304 with 25
#: a command). A few dozen already save nearly every round trip: alone, the store takes
#: about 1 ms a document with 20, 50 or 200 a command.
COMMAND_SIZE = 25


async def insert_each(
    collection: AsyncCollection[Document], docs: Sequence[Document]
) -> list[WriteError | None]:
    """One unordered `insert_many`: for each document, None (stored) or the error its own
    `insert_one` would have raised (DuplicateKeyError for a taken unique key)."""
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if exc.details.get("writeConcernErrors"):
            raise without_documents(exc) from None
        refused = {error["index"]: error for error in exc.details.get("writeErrors", [])}
        return [None if i not in refused else write_error(refused[i]) for i in range(len(docs))]
    return [None] * len(docs)


def write_error(error: Mapping[str, Any]) -> WriteError:
    """The exception a single write raises for this entry of a bulk write's errors,
    without the statement (`op`: a document that may hold personal data, and that an
    error's text would carry into logs and dead letters)."""
    message, code = str(error.get("errmsg", "")), error.get("code")
    details = {k: v for k, v in error.items() if k != "op"}
    if code == 11000:
        return DuplicateKeyError(message, code, details)
    return WriteError(message, code, details)


def without_documents(exc: BulkWriteError) -> BulkWriteError:
    """`exc` without the statements its errors name (see `write_error`): raised to every
    caller of a coalesced command, it must not carry one caller's document to another."""
    details = dict(exc.details)
    details["writeErrors"] = [
        {k: v for k, v in e.items() if k != "op"} for e in details.get("writeErrors", [])
    ]
    return BulkWriteError(details)


class CoalescingInserter:
    """Inserts into one collection; the inserts asked for in the same turn of the event
    loop go to the store as one unordered `insert_many`. Each caller gets what its own
    `insert_one` would have: nothing, or its document's error (DuplicateKeyError)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._inserts: TurnBatcher[Document, WriteError | None] = TurnBatcher(
            self._insert, COMMAND_SIZE
        )

    async def insert_one(self, doc: Document) -> None:
        """Store `doc`, or raise the error the store gave for it."""
        refused = await self._inserts.call(doc)
        if refused is not None:
            raise refused

    async def _insert(self, docs: list[Document]) -> list[WriteError | None]:
        return await insert_each(self._collection, docs)


class CoalescingUpdater:
    """Updates one document each (`update_one`) of one collection; those asked for in the
    same turn of the event loop go to the store as one unordered `update` command. The
    store counts the matches, not which: when it matched fewer than it was given, each
    caller still learns whether its document matched.

    - An idempotent update (made twice, it leaves the document as once and matches
      again: a `$set` whose filter still holds after it) is simply made again on its own.
    - An update that moves its document out of what its filter selects (a status
      change: made again, it would match nothing) names `made_if`, fields and values no
      other write sets (a token drawn for this call); when it matched nothing, or its
      batch's command failed, whether it was made is read back by them (one query)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._updates: TurnBatcher[tuple[Document, Document, Mapping[str, Any] | None], bool] = (
            TurnBatcher(self._update, COMMAND_SIZE)
        )

    async def update_one(
        self, where: Document, update: Document, *, made_if: Mapping[str, Any] | None = None
    ) -> bool:
        """Apply `update` to the document `where` (which names its `_id`) selects; whether
        one matched. `made_if`: see the class."""
        return await self._updates.call((where, update, made_if))

    async def _update(
        self, updates: list[tuple[Document, Document, Mapping[str, Any] | None]]
    ) -> list[bool | BaseException]:
        if len(updates) == 1:
            # Alone, or again after its batch failed as a whole (which may have made it).
            return [await self._alone(*updates[0])]
        marked = {i: (u[0]["_id"], u[2]) for i, u in enumerate(updates) if u[2] is not None}
        refused = False  # some statement, so the store may not have tried those after it
        try:
            result = await self._collection.bulk_write(
                [UpdateOne(where, update) for where, update, _ in updates], ordered=False
            )
            if result.matched_count == len(updates):
                return [True] * len(updates)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors") or not marked:
                raise without_documents(exc) from None  # each made alone (TurnBatcher)
            refused = True
        except OperationFailure:
            # The local store refuses a whole command at a refused statement, with those
            # before it made (MongoDB answers each statement): marked ones are read back.
            if not marked:
                raise  # each made alone (TurnBatcher)
            refused = True
        made = await self._made(marked)
        answers: list[bool | BaseException] = []
        for i, (where, update, _) in enumerate(updates):
            if made.get(i):
                answers.append(True)
            elif i in marked and not refused:
                answers.append(False)  # tried, and it matched nothing
            else:
                answers.append(await self._alone(where, update, updates[i][2]))
        return answers

    async def _alone(
        self, where: Document, update: Document, mark: Mapping[str, Any] | None
    ) -> bool | BaseException:
        """An update made on its own: whether it matched (or, marked, was made before),
        or the error the store gave for it alone."""
        try:
            if (await self._collection.update_one(where, update)).matched_count == 1:
                return True
        except TRANSIENT_STORE_ERRORS:
            raise
        except OperationFailure as exc:
            return exc
        if mark is None:
            return False
        return (await self._made({0: (where["_id"], mark)})).get(0, False)

    async def _made(self, marked: Mapping[int, tuple[Any, Mapping[str, Any]]]) -> dict[int, bool]:
        """Whether each marked update (by its place in the batch) was made: its document
        holds its mark."""
        if not marked:
            return {}
        projection = {name: 1 for _, mark in marked.values() for name in mark}
        ids = list({doc_id: None for doc_id, _ in marked.values()})
        found = {
            doc["_id"]: doc
            async for doc in self._collection.find({"_id": {"$in": ids}}, projection)
        }
        return {
            i: doc_id in found
            and all(found[doc_id].get(name) == value for name, value in mark.items())
            for i, (doc_id, mark) in marked.items()
        }
