"""The unit of work's contract, run against the in-memory store and the real one.

Every service's unit tests use `InMemoryVersionedDocuments`; production uses
`MongoVersionedDocuments`. Both must keep the same promises, so the same tests run on
both (the real one on the test stack's FerretDB, built as deploy/ builds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document, copy_document, make_mongo_client, record_fields
from lintas_shared.outbox import OutboxRelay, entry_event
from lintas_shared.unit_of_work import (
    COMMAND_SIZE,
    OUTBOX_FIELD,
    OUTBOX_SINCE_FIELD,
    PROCESSED_FIELD,
    UNSET,
    VERSION_FIELD,
    ContentionError,
    Decision,
    DocumentNotFoundError,
    DuplicateDocumentError,
    InMemoryVersionedDocuments,
    MongoVersionedDocuments,
    Outgoing,
    UnitOfWork,
    VersionConflictError,
    VersionedDocuments,
    Write,
)
from prometheus_client import REGISTRY
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from tests.support.fixtures import case_submitted
from tests.support.servers import Servers


@dataclass(frozen=True)
class Counter:
    id: str
    name: str
    count: int = 0
    label: str | None = None
    version: int = 1


class CounterCodec:
    def id_of(self, aggregate: Counter) -> str:
        return aggregate.id

    async def encode(self, aggregate: Counter) -> Document:
        return {
            "name": aggregate.name,
            "count": aggregate.count,
            "label": UNSET if aggregate.label is None else aggregate.label,
        }

    async def decode(self, doc: Document) -> Counter:
        return Counter(doc["_id"], doc["name"], doc["count"], doc.get("label"), doc["version"])


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Store:
    documents: VersionedDocuments
    clock: Clock
    # A second handle on the same documents (another instance's client), where there is one.
    other: VersionedDocuments


@dataclass(frozen=True)
class Backend:
    servers: Servers | None  # None: the in-memory store
    remember: int = 0  # the real store's first handle remembers its last writes


@pytest.fixture(
    params=[
        "memory",
        pytest.param("mongo", marks=pytest.mark.integration),
        pytest.param("mongo-remembering", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    """The in-memory store, or the real one (whose first handle may remember writes)."""
    if request.param == "memory":
        return Backend(None)
    servers: Servers = request.getfixturevalue("servers")
    return Backend(servers, remember=100 if request.param == "mongo-remembering" else 0)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    clock = Clock()
    if backend.servers is None:
        memory = InMemoryVersionedDocuments("counters", unique=[("name",)], clock=clock)
        yield Store(memory, clock, memory)
        return
    database_name = f"test_{uuid.uuid4().hex[:12]}"
    clients = [
        make_mongo_client(backend.servers.mongodb_uri, app_name=f"uow-{n}") for n in range(2)
    ]
    try:
        handles = [
            MongoVersionedDocuments(
                c[database_name]["counters"], clock, remember=backend.remember if n == 0 else 0
            )
            for n, c in enumerate(clients)
        ]
        await handles[0].ensure_indexes()
        await handles[0].collection.create_index([("name", ASCENDING)], unique=True)
        yield Store(handles[0], clock, handles[1])
    finally:
        await clients[0].drop_database(database_name)
        for client in clients:
            await client.close()


@pytest.fixture
async def counters(servers: Servers) -> AsyncIterator[AsyncCollection[Document]]:
    """A collection of its own on the real store, dropped afterwards."""
    client = make_mongo_client(servers.mongodb_uri, app_name="uow-counters")
    database_name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[database_name]["counters"]
    finally:
        await client.drop_database(database_name)
        await client.close()


def event(n: int) -> Outgoing:
    return Outgoing("lintas.test.v1", case_submitted(f"case-{n}"))


def bump(by: int = 1, *events: Outgoing) -> Callable[[Counter], Decision[Counter]]:
    def decide(counter: Counter) -> Decision[Counter]:
        return Decision(replace(counter, count=counter.count + by), events)

    return decide


class Commits:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, list[str]]] = []

    def __call__(self, doc_id: str, version: int, entries: list[Document]) -> None:
        self.seen.append((doc_id, version, [e["id"] for e in entries]))


async def test_an_added_aggregate_reads_back_at_version_one_with_its_outbox(store: Store) -> None:
    commits = Commits()
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=commits)
    first = event(1)
    await work.add(Counter("c1", "one", label="x"), [first])

    assert await work.get("c1") == Counter("c1", "one", 0, "x", 1)
    assert await work.get("nope") is None
    raw = await store.documents.read("c1")
    assert raw is not None
    assert [e["id"] for e in raw[OUTBOX_FIELD]] == [first.event.id]
    assert raw[OUTBOX_SINCE_FIELD].replace(tzinfo=UTC) == store.clock.now
    assert commits.seen == [("c1", 1, [first.event.id])]


async def test_a_document_made_again_starts_at_its_first_version_never_the_old_one(
    store: Store,
) -> None:
    firsts = iter([7_000_001, 9_000_001])
    work = UnitOfWork(store.documents, CounterCodec(), first_version=lambda: next(firsts))
    await work.add(Counter("c1", "one"))
    await work.change("c1", bump())
    assert await work.get("c1") == Counter("c1", "one", 1, None, 7_000_002)
    decided_on = await store.documents.read("c1")
    assert decided_on is not None

    # Deleted (the store port has no delete: its owner's collection does) and made again.
    if isinstance(store.documents, InMemoryVersionedDocuments):
        del store.documents.docs["c1"]
    else:
        assert isinstance(store.documents, MongoVersionedDocuments)
        await store.documents.collection.delete_one({"_id": "c1"})
        store.documents = MongoVersionedDocuments(store.documents.collection, store.clock)
        work = UnitOfWork(store.documents, CounterCodec(), first_version=lambda: next(firsts))
    await work.add(Counter("c1", "one again"))

    stale = Write(set={"name": "stale"})
    assert not await store.documents.write("c1", decided_on["version"], stale)
    assert await work.get("c1") == Counter("c1", "one again", 0, None, 9_000_001)


async def test_an_insert_refused_says_whether_the_id_or_another_key_was_taken(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    with pytest.raises(DuplicateDocumentError) as by_id:
        await work.add(Counter("c1", "other"))
    with pytest.raises(DuplicateDocumentError) as by_key:
        await work.add(Counter("c2", "one"))
    assert by_id.value.by_id
    assert not by_key.value.by_id
    assert await work.get("c2") is None


async def test_a_change_writes_state_version_events_and_hands_the_whole_outbox_on(
    store: Store,
) -> None:
    commits = Commits()
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=commits)
    await work.add(Counter("c1", "one", label="x"), [event(1)])

    def decide(counter: Counter) -> Decision[Counter]:
        return Decision(replace(counter, count=5, label=None), [event(2), event(3)])

    committed = await work.change("c1", decide)

    assert committed.changed
    assert await work.get("c1") == Counter("c1", "one", 5, None, 2)
    raw = await store.documents.read("c1")
    assert raw is not None
    assert "label" not in raw
    ids = [e["id"] for e in raw[OUTBOX_FIELD]]
    assert len(ids) == 3
    # The relay is told the outbox as it now stands: the unpublished entry first.
    assert commits.seen[-1] == ("c1", 2, ids)


@dataclass
class RecordedWrites:
    """The store port, recording each conditional write it is asked for."""

    documents: VersionedDocuments
    writes: list[Write]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.documents, name)

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        self.writes.append(write)
        return await self.documents.write(doc_id, expected_version, write)


async def test_a_change_sends_only_the_fields_that_differ_from_what_is_stored(
    store: Store,
) -> None:
    recorded = RecordedWrites(store.documents, [])
    work = UnitOfWork(recorded, CounterCodec())  # type: ignore[arg-type]
    await work.add(Counter("c1", "one", label="x"))

    await work.change("c1", bump())
    await work.change("c1", lambda c: Decision(replace(c, label=None)))
    await work.change("c1", lambda c: Decision(replace(c, label=None, name="two")))
    # True is not 1: the same in Python, another value in the store.
    await work.change("c1", lambda c: Decision(replace(c, count=True)))

    assert [(dict(w.set), list(w.unset)) for w in recorded.writes] == [
        ({"count": 1}, []),
        ({}, ["label"]),
        ({"name": "two"}, []),  # label is gone already: nothing to remove
        ({"count": True}, []),
    ]
    raw = await store.documents.read("c1")
    assert raw is not None
    assert (raw["name"], raw["count"], raw["version"], "label" in raw) == ("two", True, 5, False)


async def test_an_event_is_applied_once_however_often_it_is_delivered(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    first = await work.change("c1", bump(1), event_key="src/e1")
    again = await work.change("c1", bump(1), event_key="src/e1")
    await work.change("c1", bump(10), event_key="src/e2")

    assert first.changed
    assert not again.changed
    assert again.aggregate.count == 1
    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw["count"] == 11
    assert raw[PROCESSED_FIELD] == ["src/e1", "src/e2"]
    assert raw["version"] == 3


async def test_several_events_of_a_document_are_applied_in_order_in_one_write(
    store: Store,
) -> None:
    commits = Commits()
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=commits)
    await work.add(Counter("c1", "one"))
    await work.change("c1", bump(1), event_key="src/e1")
    second, third = event(2), event(3)

    def label_with_count(counter: Counter) -> Decision[Counter]:
        return Decision(replace(counter, label=f"at {counter.count}"), [third])

    result = await work.change_each(
        "c1",
        [
            (bump(100), "src/e1"),  # handled before: left out
            (bump(10, second), "src/e2"),
            (label_with_count, "src/e3"),  # decides on what e2 decided
            (bump(1000), "src/e2"),  # twice in one batch: once
            (lambda counter: None, "src/e4"),  # decides nothing: still recorded
        ],
    )

    assert result.changed
    assert (result.aggregate.count, result.aggregate.label) == (11, "at 11")
    raw = await store.documents.read("c1")
    assert raw is not None
    assert (raw["count"], raw["label"], raw["version"]) == (11, "at 11", 3)  # one write
    assert raw[PROCESSED_FIELD] == ["src/e1", "src/e2", "src/e3", "src/e4"]
    assert commits.seen[-1] == ("c1", 3, [second.event.id, third.event.id])
    again = await work.change_each("c1", [(bump(10), "src/e2"), (bump(10), "src/e4")])
    assert not again.changed
    stored = await store.documents.read("c1")
    assert stored is not None
    assert (stored["count"], stored["version"]) == (11, 3)


async def test_an_event_that_changes_nothing_is_still_recorded_as_processed(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    result = await work.change("c1", lambda counter: None, event_key="src/e1")
    assert not result.changed
    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw[PROCESSED_FIELD] == ["src/e1"]
    assert raw["count"] == 0


async def test_a_decision_of_nothing_without_an_event_writes_nothing(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    assert not (await work.change("c1", lambda counter: None)).changed
    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw["version"] == 1


async def test_a_named_version_that_moved_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    await work.change("c1", bump(1), expected_version=1)
    with pytest.raises(VersionConflictError) as conflict:
        await work.change("c1", bump(100), expected_version=1)
    assert conflict.value.current == 2
    assert (await work.get("c1")) == Counter("c1", "one", 1, None, 2)


async def test_a_missing_document_is_reported(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    with pytest.raises(DocumentNotFoundError):
        await work.change("ghost", bump(1))


async def test_a_write_at_a_stale_version_matches_nothing(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    await work.change("c1", bump(1))
    assert not await store.documents.write("c1", 1, Write(set={"count": 99}))
    assert not await store.documents.write("ghost", 1, Write(set={"count": 99}))
    assert (await work.get("c1")) == Counter("c1", "one", 1, None, 2)


async def test_a_change_reads_exactly_what_is_stored(store: Store) -> None:
    # A remembered copy must be the stored document to the letter: the store's datetime
    # precision, nested values, removed fields, outbox and processed keys.
    await store.documents.insert({"_id": "c1", "name": "one", "count": 0, "gone": 1}, [])
    at = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)
    written = await store.documents.write(
        "c1",
        1,
        Write(
            set={"count": 2, "at": at, "nested": {"a": [1, {"b": "c"}]}},
            unset=["gone"],
            entries=[event(1).entry()],
            processed=("src/e1",),
        ),
    )
    assert written
    remembered = await store.documents.read("c1", for_change=True)
    stored = await store.documents.read("c1")
    assert stored is not None
    assert remembered == stored
    assert "gone" not in stored
    assert stored["version"] == 2


async def test_a_copy_another_client_made_stale_loses_its_race_and_is_read_again(
    store: Store,
) -> None:
    mine = UnitOfWork(store.documents, CounterCodec())
    theirs = UnitOfWork(store.other, CounterCodec())
    await mine.add(Counter("c1", "one"))
    await mine.change("c1", bump(1), event_key="src/e1")
    await theirs.change("c1", bump(10), event_key="src/e2")
    again = await mine.change("c1", bump(1), event_key="src/e2")  # theirs applied it
    assert not again.changed
    await mine.change("c1", bump(100), event_key="src/e3")
    await mine.change("c1", bump(1), expected_version=4)
    assert await mine.get("c1") == Counter("c1", "one", 112, None, 5)


async def test_racing_changes_from_two_clients_each_apply_exactly_once(store: Store) -> None:
    mine = UnitOfWork(store.documents, CounterCodec(), attempts=200)
    theirs = UnitOfWork(store.other, CounterCodec(), attempts=200)
    await mine.add(Counter("c1", "one"))

    await asyncio.gather(
        *(
            work.change("c1", bump(1), event_key=f"src/e{n}")
            for n in range(30)
            for work in (mine, theirs)
        )
    )

    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw["count"] == 30
    assert sorted(raw[PROCESSED_FIELD]) == sorted(f"src/e{n}" for n in range(30))
    assert raw["version"] == 31


async def test_event_changes_of_many_documents_made_side_by_side_each_apply_once(
    store: Store,
) -> None:
    # A consumer's batch: more documents than one command writes, and another instance
    # changes one of them while its change is being decided.
    count = COMMAND_SIZE + 5
    commits = Commits()
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=commits)
    theirs = UnitOfWork(store.other, CounterCodec())
    for n in range(count):
        await work.add(Counter(f"c{n}", f"n{n}"))
    raced = "c3"
    decided: list[str] = []

    def deciding(doc_id: str, n: int) -> Callable[[Counter], Any]:
        async def decide(counter: Counter) -> Decision[Counter]:
            decided.append(doc_id)
            if doc_id == raced and counter.count == 0:
                await theirs.change(raced, bump(100))  # its write now misses the version
            return Decision(replace(counter, count=counter.count + 1), [event(n)])

        return decide

    await asyncio.gather(
        *(work.change(f"c{n}", deciding(f"c{n}", n), event_key=f"src/e{n}") for n in range(count))
    )

    handed_over = {doc_id for doc_id, _, _ in commits.seen}
    for n in range(count):
        raw = await store.documents.read(f"c{n}")
        assert raw is not None
        assert raw["count"] == (101 if f"c{n}" == raced else 1)
        assert raw[PROCESSED_FIELD] == [f"src/e{n}"]
        assert [entry_event(e).subject for e in raw[OUTBOX_FIELD]] == [f"case-{n}"]
        # Its event is handed to the relay: after its write, or (written in a command
        # that could not say so) when its change read it again and found its event key.
        assert f"c{n}" in handed_over
    # Each decided once, the raced one again on their change: a change written in a
    # command that could not say which of its writes matched read again and found its
    # event key, never decided twice.
    assert sorted(decided) == sorted([f"c{n}" for n in range(count)] + [raced])


@dataclass
class WrittenButUnsure:
    """The store port answering False for a write it made, as a batch's command with a
    stale neighbour does."""

    documents: VersionedDocuments

    def __getattr__(self, name: str) -> Any:
        return getattr(self.documents, name)

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        await self.documents.write(doc_id, expected_version, write)
        return False


async def test_a_change_written_but_answered_false_is_not_decided_again_and_its_events_go(
    store: Store,
) -> None:
    commits = Commits()
    await UnitOfWork(store.documents, CounterCodec()).add(Counter("c1", "one"))
    unsure = WrittenButUnsure(store.documents)
    work = UnitOfWork(unsure, CounterCodec(), on_commit=commits)  # type: ignore[arg-type]
    decided: list[int] = []
    first = event(1)

    def decide(counter: Counter) -> Decision[Counter]:
        decided.append(counter.count)
        return Decision(replace(counter, count=counter.count + 1), [first])

    committed = await work.change("c1", decide, event_key="src/e1")

    assert decided == [0]  # read again, found its event key: not decided twice
    assert not committed.changed
    assert committed.aggregate.count == 1
    raw = await store.documents.read("c1")
    assert raw is not None
    ids = [e["id"] for e in raw[OUTBOX_FIELD]]
    assert ids == [first.event.id]
    assert commits.seen == [("c1", 2, ids)]  # the stored outbox, handed to the relay


async def _stored_counters(
    counters: AsyncCollection[Document], count: int
) -> tuple[MongoVersionedDocuments, UnitOfWork[Counter]]:
    """`count` counters c0, c1, ... stored at version 1 through a store that remembers
    none of them."""
    documents = MongoVersionedDocuments(counters)
    work = UnitOfWork(documents, CounterCodec())
    for n in range(count):
        await work.add(Counter(f"c{n}", f"n{n}"))
    return documents, work


async def test_event_writes_asked_in_one_turn_go_in_one_command(
    counters: AsyncCollection[Document],
) -> None:
    count = COMMAND_SIZE + 5
    documents, _ = await _stored_counters(counters, count)

    def one(n: int, version: int) -> Write:
        return Write(set={"count": version}, processed=(f"src/v{version}-{n}",))

    updates_before = _commands_sent("update")
    wrote = await asyncio.gather(*(documents.write(f"c{n}", 1, one(n, 1)) for n in range(count)))
    assert wrote == [True] * count
    assert _commands_sent("update") - updates_before == 2  # 25 and 5

    # One of a command's writes misses its version: the store counts the matches, not
    # which, so each answers False; the others were made all the same.
    wrote = await asyncio.gather(
        documents.write("c0", 2, one(0, 2)),
        documents.write("c1", 1, one(1, 2)),  # stale
        documents.write("c2", 2, one(2, 2)),
    )
    assert wrote == [False, False, False]
    stored = {d["_id"]: d async for d in documents.collection.find({})}
    assert [stored[f"c{n}"]["version"] for n in range(3)] == [3, 2, 3]
    assert stored["c0"][PROCESSED_FIELD] == ["src/v1-0", "src/v2-0"]
    assert stored["c1"][PROCESSED_FIELD] == ["src/v1-1"]
    # A write without an event key is never written with others: its answer is exact.
    assert await documents.write("c3", 2, Write(set={"count": 9}))
    assert not await documents.write("c4", 1, Write(set={"count": 9}))
    assert _commands_sent("update") - updates_before == 2 + 1 + 2


@pytest.mark.integration
async def test_event_changes_made_side_by_side_read_their_documents_in_one_query(
    counters: AsyncCollection[Document],
) -> None:
    # A consumer far behind (an import's events) remembers none of its documents: the
    # changes of a batch read them together, then write them together.
    count = COMMAND_SIZE + 5
    documents, work = await _stored_counters(counters, count)

    finds_before, updates_before = _commands_sent("find"), _commands_sent("update")
    committed = await asyncio.gather(
        *(work.change(f"c{n}", bump(n + 1), event_key=f"src/e-{n}") for n in range(count))
    )
    assert [c.aggregate.count for c in committed] == [n + 1 for n in range(count)]
    assert _commands_sent("find") - finds_before == 1
    assert _commands_sent("update") - updates_before == 2  # 25 and 5
    stored = {d["_id"]: d async for d in documents.collection.find({})}
    assert [stored[f"c{n}"]["count"] for n in range(count)] == [n + 1 for n in range(count)]
    # The same document asked for twice in one turn: each caller gets its own copy.
    first, second = await asyncio.gather(documents.read("c0"), documents.read("c0"))
    assert first == second
    assert first is not second


async def test_inserts_made_side_by_side_are_each_stored_or_refused_on_their_own(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("taken", "taken-name"))
    count = COMMAND_SIZE + 5
    inserts_before = _commands_sent("insert")
    fresh = [Counter(f"c{n}", f"n{n}") for n in range(count)]
    got = await asyncio.gather(
        *(work.add(c) for c in [*fresh, Counter("taken", "x"), Counter("y", "taken-name")]),
        return_exceptions=True,
    )

    assert got[:count] == [None] * count
    by_id, by_key = got[count:]
    assert isinstance(by_id, DuplicateDocumentError)
    assert by_id.by_id
    assert isinstance(by_key, DuplicateDocumentError)
    assert not by_key.by_id
    for counter in fresh:
        assert await work.get(counter.id) == counter
    assert await work.get("y") is None
    if isinstance(store.documents, MongoVersionedDocuments):
        assert _commands_sent("insert") - inserts_before == 2


@dataclass
class Tagged:
    id: str
    tags: dict[str, int]


class TaggedCodec:
    """Hands the stored sub-document itself to the aggregate, as a codec may."""

    def id_of(self, aggregate: Tagged) -> str:
        return aggregate.id

    async def encode(self, aggregate: Tagged) -> Document:
        return {"tags": aggregate.tags}

    async def decode(self, doc: Document) -> Tagged:
        return Tagged(doc["_id"], doc["tags"])


async def test_a_decision_changing_a_nested_value_in_place_is_written(store: Store) -> None:
    work = UnitOfWork(store.documents, TaggedCodec())
    await work.add(Tagged("t1", {"a": 1}))

    def decide(tagged: Tagged) -> Decision[Tagged]:
        tagged.tags["a"] = 2  # in place
        return Decision(tagged)

    await work.change("t1", decide)
    assert await work.get("t1") == Tagged("t1", {"a": 2})


async def test_changes_of_one_document_from_one_process_take_turns_and_never_race(
    store: Store,
) -> None:
    recorded = RecordedWrites(store.documents, [])
    work = UnitOfWork(recorded, CounterCodec())  # type: ignore[arg-type]
    await work.add(Counter("c1", "one"))
    decided: list[int] = []

    async def slow_bump(counter: Counter) -> Decision[Counter]:
        decided.append(counter.count)
        await asyncio.sleep(0)  # the other change runs meanwhile, if it may
        return Decision(replace(counter, count=counter.count + 1))

    await asyncio.gather(*(work.change("c1", slow_bump) for _ in range(3)))

    assert decided == [0, 1, 2]  # each decided once, on the state the one before left
    assert len(recorded.writes) == 3
    assert await work.get("c1") == Counter("c1", "one", 3, None, 4)


async def test_a_change_made_while_deciding_a_change_of_its_document_does_not_wait_for_it(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"))
    decided: list[int] = []

    async def nested(counter: Counter) -> Decision[Counter]:
        decided.append(counter.count)
        if len(decided) == 1:
            await asyncio.wait_for(work.change("c1", bump(10)), timeout=5)
        return Decision(replace(counter, count=counter.count + 1))

    await work.change("c1", nested)

    # The inner change wrote first; the outer one lost the race and decided again.
    assert decided == [0, 10]
    assert await work.get("c1") == Counter("c1", "one", 11, None, 3)


async def test_a_document_that_keeps_changing_gives_up_after_its_attempts(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec(), attempts=3)
    await work.add(Counter("c1", "one"))
    other = UnitOfWork(store.other, CounterCodec())

    async def meddle(counter: Counter) -> Decision[Counter]:
        await other.change("c1", bump(1))  # someone else writes first, every time
        return Decision(replace(counter, count=counter.count + 100))

    with pytest.raises(ContentionError):
        await work.change("c1", meddle)
    assert (await work.get("c1")) == Counter("c1", "one", 3, None, 4)


async def test_clearing_published_entries_empties_only_an_outbox_that_is_exactly_them(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"), [event(1), event(2)])
    raw = await store.documents.read("c1")
    assert raw is not None
    published = list(raw[OUTBOX_FIELD])
    await work.change("c1", bump(1, event(3)))  # a writer adds one meanwhile

    assert not await store.documents.clear_published("c1", published)
    raw = await store.documents.read("c1")
    assert raw is not None
    left = raw[OUTBOX_FIELD]
    assert [entry_event(e).subject for e in left] == ["case-3"]
    assert OUTBOX_SINCE_FIELD in raw  # still waiting

    assert await store.documents.clear_published("c1", left)
    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw[OUTBOX_FIELD] == []
    assert OUTBOX_SINCE_FIELD not in raw


async def test_clearing_many_at_once_names_only_the_outboxes_that_were_not_exactly_them(
    store: Store,
) -> None:
    # More documents than one command clears, with a miss in the first and in the last.
    count = COMMAND_SIZE + 4
    last = f"c{count - 1}"
    work = UnitOfWork(store.documents, CounterCodec())
    for n in range(count):
        await work.add(Counter(f"c{n}", f"n{n}"), [event(10 * n), event(10 * n + 1)])
    published: dict[str, list[Document]] = {}
    for n in range(count):
        raw = await store.documents.read(f"c{n}")
        assert raw is not None
        published[f"c{n}"] = list(raw[OUTBOX_FIELD])
    for doc_id in ("c2", last):
        await work.change(doc_id, bump(1, event(99)))  # a writer adds one meanwhile
    assert await store.documents.clear_published("c3", published["c3"])  # cleared before

    updates_before = _commands_sent("update")
    assert await store.documents.clear_published_many(published) == {"c2", last}
    if isinstance(store.documents, MongoVersionedDocuments):
        # Two commands clear the exact ones; each missed outbox is tried alone, pulled
        # entry by entry, then its time is dropped.
        assert _commands_sent("update") - updates_before == 2 + 2 * (1 + 2 + 1)
    outboxes = {}
    for n in range(count):
        raw = await store.documents.read(f"c{n}")
        assert raw is not None
        outboxes[f"c{n}"] = [entry_event(e).subject for e in raw[OUTBOX_FIELD]]
        assert (OUTBOX_SINCE_FIELD in raw) == (f"c{n}" in {"c2", last})
    assert outboxes == {
        f"c{n}": ["case-99"] if f"c{n}" in {"c2", last} else [] for n in range(count)
    }
    assert await store.documents.clear_published_many({}) == set()


def _commands_sent(name: str) -> float:
    labels = {"collection": "counters", "command": name}
    return REGISTRY.get_sample_value("lintas_store_commands_total", labels) or 0.0


async def test_left_behind_finds_only_outboxes_older_than_asked_at_most_the_limit(
    store: Store,
) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    start = store.clock.now
    for n in range(4):
        store.clock.now = start + timedelta(minutes=n)
        await work.add(Counter(f"c{n}", f"name-{n}"), [event(n)] if n != 2 else [])

    found = await store.documents.left_behind(start + timedelta(minutes=1, seconds=30), 10)
    assert sorted(d["_id"] for d in found) == ["c0", "c1"]
    assert [len(d[OUTBOX_FIELD]) for d in found] == [1, 1]
    # In no promised order (the relay needs none): two of the three with an outbox.
    limited = [d["_id"] for d in await store.documents.left_behind(start + timedelta(hours=1), 2)]
    assert len(set(limited)) == 2
    assert set(limited) <= {"c0", "c1", "c3"}

    # A later write keeps the time of the oldest unpublished entry.
    store.clock.now = start + timedelta(hours=2)
    await work.change("c0", bump(1, event(9)))
    found = await store.documents.left_behind(start + timedelta(seconds=1), 10)
    assert [d["_id"] for d in found] == ["c0"]


class ListPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, CloudEvent]] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        self.sent.append((topic, event))


class SentSignal(ListPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.one_sent = asyncio.Event()

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await super().publish(topic, event)
        self.one_sent.set()


class CountedClears(InMemoryVersionedDocuments):
    """The in-memory store, noting each many-document removal."""

    def __init__(self) -> None:
        super().__init__("counters")
        self.removals: list[set[str]] = []
        self.removed = asyncio.Event()

    async def clear_published_many(self, published: Mapping[str, Sequence[Document]]) -> set[str]:
        self.removals.append(set(published))
        missed = await super().clear_published_many(published)
        self.removed.set()
        return missed


async def _relay_over_counters(
    documents: InMemoryVersionedDocuments, counters: int, **options: Any
) -> tuple[OutboxRelay, ListPublisher, UnitOfWork[Counter]]:
    """A relay over `documents` holding `counters` new counters (c0, c1, ...), each
    with one event waiting."""
    publisher = ListPublisher()
    relay = OutboxRelay(documents, publisher, **options)
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    for n in range(counters):
        await work.add(Counter(f"c{n}", f"n{n}"), [event(n)])
    return relay, publisher, work


async def test_the_running_relay_publishes_at_once_and_removes_many_outboxes_together() -> None:
    documents = CountedClears()
    relay, publisher, _ = await _relay_over_counters(documents, 3, clear_delay=0.05)
    relay.start()
    try:
        async with asyncio.timeout(10):
            await documents.removed.wait()
    finally:
        await relay.stop()
    assert sorted(e.subject for _, e in publisher.sent) == ["case-0", "case-1", "case-2"]
    assert documents.removals == [{"c0", "c1", "c2"}]
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())


async def test_a_relay_far_behind_removes_what_it_published_as_it_goes() -> None:
    # A pass lasts as long as writers hand over more (a bulk import): holding every
    # published entry until it ends grew intake by ~8 MB a thousand rows and left the
    # published entries in the stored outboxes.
    documents = CountedClears()
    relay, _, _ = await _relay_over_counters(documents, 7, batch_size=2)
    assert await relay.relay_once(search=False) == 7
    assert max(len(removal) for removal in documents.removals) <= 2
    assert set().union(*documents.removals) == {f"c{n}" for n in range(7)}
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())


class CountedReads(InMemoryVersionedDocuments):
    def __init__(self) -> None:
        super().__init__("counters")
        self.reads: list[str] = []

    async def read(self, doc_id: str, *, for_change: bool = False) -> Document | None:
        if not for_change:  # the relay's reads, not the unit of work's
            self.reads.append(doc_id)
        return await super().read(doc_id, for_change=for_change)


async def test_beyond_its_limit_a_relay_keeps_only_ids_and_reads_those_documents() -> None:
    # A bulk import can outrun the relay: the hand-overs it keeps in memory are bounded,
    # and what is beyond the bound is read from the store when its turn comes.
    documents = CountedReads()
    relay, publisher, work = await _relay_over_counters(documents, 5, keep_entries=2)
    await work.change("c0", bump(1, event(10)))  # a known document keeps its hand-over
    assert relay.backlogged is False  # five waiting, a pass takes 200
    assert await relay.relay_once(search=False) == 6
    assert sorted(documents.reads) == ["c2", "c3", "c4"]
    sent = sorted(e.subject for _, e in publisher.sent)
    assert sent == ["case-0", "case-1", "case-10", "case-2", "case-3", "case-4"]
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())


class CountedSearches(InMemoryVersionedDocuments):
    def __init__(self) -> None:
        super().__init__("counters")
        self.searches = 0

    async def left_behind(self, older_than: datetime, limit: int) -> list[Document]:
        self.searches += 1
        return await super().left_behind(older_than, limit)


async def test_beyond_its_bound_a_relay_keeps_no_hand_over_and_finds_those_documents_again() -> (
    None
):
    # Memory flat however far behind: a 100,000-row import left 86,000 hand-overs waiting.
    documents = CountedSearches()
    relay, publisher, _ = await _relay_over_counters(
        documents, 9, keep_entries=2, keep_ids=3, batch_size=2
    )
    assert relay.kept == 3
    assert relay.pending()[0] == 9
    assert await relay.relay_once(search=False) == 9
    assert sorted(e.subject for _, e in publisher.sent) == [f"case-{n}" for n in range(9)]
    assert documents.searches >= 3  # the six not kept, two a pass
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())
    assert relay.pending() == (0, None)


class WritesWhilePublishing(ListPublisher):
    """Calls `write` once, when the first event goes out."""

    def __init__(self) -> None:
        super().__init__()
        self.write: Callable[[], Awaitable[None]] | None = None

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await super().publish(topic, event)
        write, self.write = self.write, None
        if write is not None:
            await write()


async def test_once_a_relay_kept_no_hand_over_the_store_sets_the_order_first_in_first_out() -> None:
    documents = InMemoryVersionedDocuments("counters")
    publisher = WritesWhilePublishing()
    relay = OutboxRelay(documents, publisher, keep_entries=2, keep_ids=2, batch_size=2)
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    for n in range(5):
        await work.add(Counter(f"c{n}", f"n{n}"), [event(n)])

    async def write() -> None:  # room in memory again, but c2-c4 wait in the store
        await work.add(Counter("c5", "n5"), [event(5)])

    publisher.write = write
    assert await relay.relay_once(search=False) == 6
    assert [e.subject for _, e in publisher.sent] == [f"case-{n}" for n in range(6)]


async def test_a_relay_catching_up_takes_no_entry_written_after_its_last_hand_over_not_kept() -> (
    None
):
    # Another instance's later writes are its relay's to publish: not searched for.
    documents = InMemoryVersionedDocuments("counters")
    relay, publisher, _ = await _relay_over_counters(documents, 3, keep_entries=1, keep_ids=1)
    elsewhere = UnitOfWork(documents, CounterCodec())  # no hand-over to this relay
    await asyncio.sleep(0.002)  # a later time than the last hand-over not kept
    await elsewhere.add(Counter("other", "o"), [event(9)])
    assert await relay.relay_once(search=False) == 3
    assert sorted(e.subject for _, e in publisher.sent) == ["case-0", "case-1", "case-2"]
    other = await documents.read("other")
    assert other is not None
    assert [entry_event(e).subject for e in other[OUTBOX_FIELD]] == ["case-9"]


@pytest.mark.parametrize("writers_remove", [False, True])
async def test_stopped_far_behind_a_relay_publishes_each_hand_over_it_did_not_keep_once(
    writers_remove: bool,
) -> None:
    documents = InMemoryVersionedDocuments("counters")
    relay, publisher, work = await _relay_over_counters(
        documents, 6, keep_entries=2, keep_ids=2, batch_size=2, writers_remove=writers_remove
    )
    await work.change("c4", bump(1, event(40)))  # a second event of one not kept
    await relay.stop()  # flushes: what it kept, then what it did not
    sent = sorted(e.subject for _, e in publisher.sent)
    assert sent == sorted([f"case-{n}" for n in range(6)] + ["case-40"])
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())


class WritesDuringSearch(CountedSearches):
    """The first search finds what is stored, then a writer hands over two more."""

    def __init__(self) -> None:
        super().__init__()
        self.write: Callable[[], Awaitable[None]] | None = None

    async def left_behind(self, older_than: datetime, limit: int) -> list[Document]:
        found = await super().left_behind(older_than, limit)
        write, self.write = self.write, None
        if write is not None:
            await write()
        return found


async def test_a_hand_over_not_kept_during_the_relays_search_is_still_found() -> None:
    documents = WritesDuringSearch()
    relay, publisher, work = await _relay_over_counters(
        documents, 3, keep_entries=1, keep_ids=1, batch_size=5
    )

    async def write() -> None:
        for n in (7, 8):  # the relay holds one already: neither is kept
            await work.add(Counter(f"c{n}", f"n{n}"), [event(n)])

    documents.write = write
    assert await relay.relay_once(search=False) == 5
    sent = sorted(e.subject for _, e in publisher.sent)
    assert sent == ["case-0", "case-1", "case-2", "case-7", "case-8"]
    assert relay.pending() == (0, None)


async def test_a_relay_with_more_waiting_than_a_pass_takes_does_not_search() -> None:
    documents = CountedSearches()
    relay = OutboxRelay(documents, ListPublisher(), batch_size=2)
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    await work.add(Counter("c0", "n0"), [event(0)])
    assert not relay.backlogged
    await work.add(Counter("c1", "n1"), [event(1)])
    assert relay.backlogged
    assert await relay.search_left_behind() == 0
    assert documents.searches == 0
    assert await relay.relay_once(search=False) == 2
    assert not relay.backlogged
    await relay.search_left_behind()
    assert documents.searches == 1


async def test_a_relay_stopped_without_flushing_still_removes_what_it_published() -> None:
    documents = CountedClears()
    publisher = SentSignal()
    relay = OutboxRelay(documents, publisher, clear_delay=3600)  # not removed while running
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    relay.start()
    await work.add(Counter("c1", "one"), [event(1)])
    async with asyncio.timeout(10):
        await publisher.one_sent.wait()
    assert documents.docs["c1"][OUTBOX_FIELD] != []
    await relay.stop(flush=False)
    assert documents.removals == [{"c1"}]
    assert documents.docs["c1"][OUTBOX_FIELD] == []


async def test_the_relay_publishes_what_writers_hand_over_and_what_was_left_behind(
    store: Store,
) -> None:
    publisher = ListPublisher()
    relay = OutboxRelay(store.documents, publisher)
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=relay.on_commit)
    crashed = UnitOfWork(store.other, CounterCodec())  # an instance that died before its relay ran
    await work.add(Counter("c1", "one"), [event(1)])
    await work.change("c1", bump(1, event(2), event(3)))
    await crashed.add(Counter("c2", "two"), [event(4)])

    assert await relay.relay_once(search=False) == 3
    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2", "case-3"]
    assert await relay.relay_once() == 1  # the search finds c2's entry
    assert [e.subject for _, e in publisher.sent][-1] == "case-4"
    assert await relay.relay_once() == 0
    for doc_id in ("c1", "c2"):
        raw = await store.documents.read(doc_id)
        assert raw is not None
        assert raw[OUTBOX_FIELD] == []
    assert relay.pending() == (0, None)


async def test_an_entry_written_before_events_were_kept_as_text_is_still_published(
    store: Store,
) -> None:
    # Outbox entries held the event's fields as a document until December 2026: what an
    # older instance left behind is published as it was.
    older = event(5)
    entry = {
        "id": older.event.id,
        "topic": older.topic,
        "event": older.event.model_dump(mode="json"),
    }
    await store.other.insert({"_id": "c5", "name": "five", "count": 0}, [entry])
    assert isinstance(older.entry()["event"], str)  # what is written now
    publisher = ListPublisher()
    relay = OutboxRelay(store.documents, publisher)
    assert await relay.relay_once() == 1
    assert publisher.sent == [(older.topic, older.event)]
    raw = await store.documents.read("c5")
    assert raw is not None
    assert raw[OUTBOX_FIELD] == []


async def test_clearing_nothing_drops_only_the_time_of_an_empty_outbox(store: Store) -> None:
    work = UnitOfWork(store.documents, CounterCodec())
    await work.add(Counter("c1", "one"), [event(1)])
    assert await store.documents.clear_published("c1", [])
    raw = await store.documents.read("c1")
    assert raw is not None
    assert OUTBOX_SINCE_FIELD in raw  # an entry still waits

    assert await store.documents.clear_published("c1", raw[OUTBOX_FIELD])
    await work.change("c1", bump(1, event(2)))
    raw = await store.documents.read("c1")
    assert raw is not None
    assert await store.documents.clear_published("c1", raw[OUTBOX_FIELD])
    assert await store.documents.clear_published("c1", [])
    raw = await store.documents.read("c1")
    assert raw is not None
    assert OUTBOX_SINCE_FIELD not in raw


async def test_a_hand_over_listing_entries_already_published_sends_only_the_new_ones(
    store: Store,
) -> None:
    publisher = ListPublisher()
    relay = OutboxRelay(store.documents, publisher)
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=relay.on_commit)
    await work.add(Counter("c1", "one"), [event(1)])
    stale = await store.documents.read("c1")  # a writer reads before the relay runs
    assert stale is not None
    assert await relay.relay_once(search=False) == 1

    # That writer's change: its hand-over lists the entry it read, published since.
    second = event(2)
    assert await store.documents.write("c1", 1, Write(set={}, entries=[second.entry()]))
    relay.on_commit("c1", 2, [*stale[OUTBOX_FIELD], second.entry()])
    assert await relay.relay_once(search=False) == 1

    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2"]
    raw = await store.documents.read("c1")
    assert raw is not None
    assert raw[OUTBOX_FIELD] == []


@pytest.mark.integration
async def test_a_remembering_store_answers_a_change_from_its_last_write(
    counters: AsyncCollection[Document],
) -> None:
    # Proof the copy is used: a write behind its back that bumps no version (which no
    # Lintas writer does) is not seen by a change's read, only by a plain read.
    documents = MongoVersionedDocuments(counters, remember=2)
    work = UnitOfWork(documents, CounterCodec())
    for n in range(3):
        await work.add(Counter(f"c{n}", f"n{n}"))
    await work.change("c2", bump(1))
    await documents.collection.update_many({}, {"$set": {"name": "behind"}})

    remembered = await documents.read("c2", for_change=True)
    assert remembered is not None
    assert (remembered["name"], remembered["count"]) == ("n2", 1)
    stored = await documents.read("c2")
    assert stored is not None
    assert stored["name"] == "behind"
    # Two are kept: the oldest add was let go and is read from the store, together
    # with a plain read of it in the same query; only the change's copy is kept.
    plain, forgotten = await asyncio.gather(
        documents.read("c0"), documents.read("c0", for_change=True)
    )
    assert forgotten is not None
    assert forgotten["name"] == "behind"
    assert plain == forgotten
    assert plain is not forgotten
    assert await documents.read("c0", for_change=True) is forgotten


@pytest.mark.integration
async def test_a_remembered_document_handed_out_is_never_changed_by_later_writes(
    counters: AsyncCollection[Document],
) -> None:
    # A change's read gets the remembered document itself, not a copy: the writes and
    # clears that follow must remember new documents instead of changing that one.
    documents = MongoVersionedDocuments(counters, remember=2)
    work = UnitOfWork(documents, CounterCodec())
    await work.add(Counter("c1", "one"), [event(1)])
    handed = await documents.read("c1", for_change=True)
    assert handed is not None
    before = copy_document(handed)

    await work.change("c1", bump(1, event(2)), event_key="e-1")
    second = await documents.read("c1", for_change=True)
    assert second is not None
    second_before = copy_document(second)
    assert len(second[OUTBOX_FIELD]) == 2
    assert await documents.clear_published_many({"c1": second[OUTBOX_FIELD]}) == set()
    await work.change("c1", bump(1))

    assert handed == before
    assert second == second_before
    now = await documents.read("c1", for_change=True)
    assert now is not None
    assert (now["count"], now[VERSION_FIELD], now[PROCESSED_FIELD]) == (2, 3, ["e-1"])
    assert now[OUTBOX_FIELD] == []
    assert now == await documents.read("c1")


def test_a_copied_document_shares_no_dict_or_list_with_its_original() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    original: Document = {"a": {"b": [1, {"c": "x"}]}, "t": (1, {"d": 2}), "at": at}
    copied = copy_document(original)
    assert copied == {"a": {"b": [1, {"c": "x"}]}, "t": [1, {"d": 2}], "at": at}
    copied["a"]["b"][1]["c"] = "changed"
    copied["t"][1]["d"] = 3
    copied["a"]["b"].append(4)
    assert original == {"a": {"b": [1, {"c": "x"}]}, "t": (1, {"d": 2}), "at": at}


def test_a_records_fields_are_what_asdict_gives_with_the_values_shared() -> None:
    @dataclass(frozen=True)
    class Entry:
        at: datetime
        summary: str
        pairs: tuple[tuple[str, str], ...] = ()
        person: str | None = None

    entry = Entry(datetime(2026, 12, 5, tzinfo=UTC), "offered", (("HKD", "1.00"),))
    fields = record_fields(entry)
    assert fields == asdict(entry)
    assert list(fields) == ["at", "summary", "pairs", "person"]
    assert fields["at"] is entry.at  # not a copy: asdict's deep copies were the cost


class PublishedStub:
    """The relay's side of `UnitOfWork(published=...)`: so many first entries of each
    document published and not removed yet."""

    def __init__(self, **fronts: int) -> None:
        self.fronts = dict(fronts)
        self.removed: list[tuple[str, list[str]]] = []

    def published_front(self, doc_id: str, outbox: Sequence[Document]) -> int:
        return min(self.fronts.get(doc_id, 0), len(outbox))

    def removed_by_writer(self, doc_id: str, ids: Sequence[str]) -> None:
        self.removed.append((doc_id, list(ids)))
        self.fronts[doc_id] = 0


async def _outbox_of(store: Store, doc_id: str) -> tuple[list[str], datetime | None]:
    raw = await store.documents.read(doc_id)
    assert raw is not None
    return [entry_event(e).subject for e in raw[OUTBOX_FIELD]], raw.get(OUTBOX_SINCE_FIELD)


async def test_a_change_removes_what_the_relay_published_in_its_own_write(store: Store) -> None:
    commits, published = Commits(), PublishedStub(c1=1, c2=1, c3=1)
    work = UnitOfWork(store.documents, CounterCodec(), on_commit=commits, published=published)
    for n in (1, 2, 3):
        await work.add(Counter(f"c{n}", f"n{n}"), [event(10 * n), event(10 * n + 1)])
    published.fronts["c2"] = 2
    published.fronts["c3"] = 2
    added_at = store.clock.now
    store.clock.now += timedelta(seconds=5)

    await work.change("c1", bump(1, event(12)))  # one published, one waiting, one new
    assert await _outbox_of(store, "c1") == (["case-11", "case-12"], added_at)
    raw = await store.documents.read("c1")
    assert raw is not None
    assert commits.seen[-1][2] == [e["id"] for e in raw[OUTBOX_FIELD]]  # handed to the relay

    await work.change("c2", bump(1), event_key="k2")  # all published, none new
    assert await _outbox_of(store, "c2") == ([], None)

    await work.change("c3", bump(1, event(32)))  # all published, one new: its own time
    assert await _outbox_of(store, "c3") == (["case-32"], store.clock.now)

    assert [doc_id for doc_id, _ in published.removed] == ["c1", "c2", "c3"]
    assert [len(ids) for _, ids in published.removed] == [1, 2, 2]
    assert await work.get("c2") == Counter("c2", "n2", 1, None, 2)


async def test_a_change_whose_published_entries_were_removed_meanwhile_reads_again(
    store: Store,
) -> None:
    published = PublishedStub(c1=1)
    work = UnitOfWork(store.documents, CounterCodec(), published=published)
    await work.add(Counter("c1", "one"), [event(1)])
    raw = await store.documents.read("c1")
    assert raw is not None
    decided = 0

    async def decide(counter: Counter) -> Decision[Counter]:
        nonlocal decided
        decided += 1
        if decided == 1:  # the relay's removal lands between the read and the write
            assert await store.other.clear_published("c1", raw[OUTBOX_FIELD])
        return bump(1, event(2))(counter)

    await work.change("c1", decide)
    assert decided == 2
    assert await work.get("c1") == Counter("c1", "one", 1, None, 2)
    assert (await _outbox_of(store, "c1"))[0] == ["case-2"]
    assert published.removed == []  # its write on the second read removed nothing

    # The store refuses such a write outright: the outbox is not as read.
    stale = Write(set={}, published=[raw[OUTBOX_FIELD][0]["id"]], unpublished=[])
    assert not await store.documents.write("c1", 2, stale)
    assert (await _outbox_of(store, "c1"))[0] == ["case-2"]


class CountedSends(ListPublisher):
    def __init__(self) -> None:
        super().__init__()
        self._sent = asyncio.Condition()

    async def publish(self, topic: str, event: CloudEvent) -> None:
        await super().publish(topic, event)
        async with self._sent:
            self._sent.notify_all()

    async def sent_at_least(self, count: int) -> None:
        async with asyncio.timeout(10), self._sent:
            await self._sent.wait_for(lambda: len(self.sent) >= count)


async def test_a_relay_tells_a_writer_what_it_published_and_then_leaves_it_to_the_writer() -> None:
    documents = CountedClears()
    publisher = CountedSends()
    relay = OutboxRelay(documents, publisher, clear_delay=3600)  # removal held back
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit, published=relay)
    relay.start()
    try:
        await work.add(Counter("c1", "one"), [event(1), event(2)])
        await work.add(Counter("c2", "two"), [event(3)])
        await publisher.sent_at_least(3)
        outbox = documents.docs["c1"][OUTBOX_FIELD]
        assert relay.published_front("c1", outbox) == 2
        assert relay.published_front("c1", outbox[1:]) == 0  # not the front it published
        await work.change("c1", bump(1, event(4)))
        assert [entry_event(e).subject for e in documents.docs["c1"][OUTBOX_FIELD]] == ["case-4"]
        await publisher.sent_at_least(4)
    finally:
        await relay.stop(flush=False)
    # The relay removed c2's entry and c1's new one; c1's first two went with the change.
    assert documents.removals == [{"c1", "c2"}]
    assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())
    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2", "case-3", "case-4"]


async def test_a_write_removing_published_entries_misses_an_outbox_longer_than_read(
    store: Store,
) -> None:
    await UnitOfWork(store.documents, CounterCodec()).add(Counter("c1", "one"), [event(1)])
    await UnitOfWork(store.documents, CounterCodec()).change("c1", bump(1, event(2)))
    raw = await store.documents.read("c1")
    assert raw is not None
    first = raw[OUTBOX_FIELD][0]["id"]
    # Read when the outbox held the first entry only: the second came with version 2,
    # so the version misses too; the outbox's condition must miss on its own as well.
    shorter = Write(set={}, published=[first], unpublished=[])
    assert not await store.documents.write("c1", 2, shorter)
    assert len((await _outbox_of(store, "c1"))[0]) == 2


class AnswersFalseOnce(InMemoryVersionedDocuments):
    """Makes the next event's write and answers False, as a batch's command with a
    stale neighbour does."""

    def __init__(self) -> None:
        super().__init__("counters")
        self.unsure = False

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        made = await super().write(doc_id, expected_version, write)
        if made and self.unsure and write.processed:
            self.unsure = False
            return False
        return made


async def test_a_write_that_removed_published_entries_but_answered_false_leaves_none() -> None:
    documents = AnswersFalseOnce()
    publisher = CountedSends()
    relay = OutboxRelay(documents, publisher, clear_delay=3600)  # removal held back
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit, published=relay)
    relay.start()
    try:
        await work.add(Counter("c1", "one"), [event(1)])
        await publisher.sent_at_least(1)
        documents.unsure = True
        await work.change("c1", bump(1, event(2)), event_key="k1")  # removes case-1
        await publisher.sent_at_least(2)
    finally:
        await relay.stop(flush=False)
    assert documents.docs["c1"][OUTBOX_FIELD] == []
    assert OUTBOX_SINCE_FIELD not in documents.docs["c1"]
    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2"]


class HeldSends(CountedSends):
    """Holds the send of one event until released."""

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, topic: str, event: CloudEvent) -> None:
        if event.subject == self.subject:
            self.holding.set()
            await self.release.wait()
        await super().publish(topic, event)


async def test_a_writer_removing_published_entries_while_the_relay_sends_more_leaves_none() -> None:
    documents = CountedClears()
    publisher = HeldSends("case-2")
    relay = OutboxRelay(documents, publisher, clear_delay=3600)  # removal held back
    plain = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit, published=relay)
    relay.start()
    try:
        await plain.add(Counter("c1", "one"), [event(1)])
        await publisher.sent_at_least(1)
        await plain.change("c1", bump(1, event(2)))  # hands over [case-1, case-2]
        async with asyncio.timeout(10):
            await publisher.holding.wait()  # the relay is sending case-2
        await work.change("c1", bump(1, event(3)))  # removes case-1 meanwhile
        assert [entry_event(e).subject for e in documents.docs["c1"][OUTBOX_FIELD]] == [
            "case-2",
            "case-3",
        ]
        publisher.release.set()
        await publisher.sent_at_least(3)
    finally:
        await relay.stop(flush=False)
    assert documents.docs["c1"][OUTBOX_FIELD] == []
    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2", "case-3"]


class FailsOnce(ListPublisher):
    """Fails the send of one event once, after letting `meanwhile` run."""

    def __init__(self, subject: str, meanwhile: Callable[[], Awaitable[object]]) -> None:
        super().__init__()
        self.subject: str | None = subject
        self.meanwhile = meanwhile

    async def publish(self, topic: str, event: CloudEvent) -> None:
        if event.subject == self.subject:
            self.subject = None
            await self.meanwhile()
            raise ConnectionError("broker unavailable")
        await super().publish(topic, event)


async def test_a_send_failing_halfway_through_a_document_leaves_nothing_behind() -> None:
    documents = InMemoryVersionedDocuments("counters")
    work: UnitOfWork[Counter]

    async def change_meanwhile() -> object:
        return await work.change("c1", bump(1, event(3)))

    publisher = FailsOnce("case-2", change_meanwhile)
    relay = OutboxRelay(documents, publisher, clear_delay=3600)
    work = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit, published=relay)
    await work.add(Counter("c1", "one"), [event(1), event(2)])
    with pytest.raises(ConnectionError):
        await relay.relay_once(search=False)  # case-1 out, case-2 failed
    await relay.relay_once(search=False)
    await work.change("c1", bump(1, event(4)))
    await relay.relay_once(search=False)
    assert documents.docs["c1"][OUTBOX_FIELD] == []
    assert [e.subject for _, e in publisher.sent] == ["case-1", "case-2", "case-3", "case-4"]


class RemovalSignal(CountedClears):
    """Counted removals, each awaitable in turn."""

    async def nth_removal(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.removals) < count:
                self.removed.clear()
                await self.removed.wait()


@contextlib.asynccontextmanager
async def running_relay(
    documents: InMemoryVersionedDocuments, publisher: CountedSends, **relay_options: Any
) -> AsyncIterator[UnitOfWork[Counter]]:
    """A started relay over `documents` and a unit of work whose writers remove what it
    published; stopped (without a last flush) on leaving."""
    relay = OutboxRelay(documents, publisher, **relay_options)
    relay.start()
    try:
        yield UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit, published=relay)
    finally:
        await relay.stop(flush=False)


async def test_where_writers_remove_each_document_waits_the_whole_delay() -> None:
    for writers_remove, expected in ((False, [{"c1", "c2"}]), (True, [{"c1"}, {"c2"}])):
        documents = RemovalSignal()
        publisher = CountedSends()
        async with running_relay(
            documents, publisher, clear_delay=2.0, writers_remove=writers_remove
        ) as work:
            await work.add(Counter("c1", "one"), [event(1)])
            await publisher.sent_at_least(1)
            # c2 published a while after c1, within the delay but past the slack (a
            # fourth of it) that lets documents waiting in full go together.
            await asyncio.sleep(1.0)
            await work.add(Counter("c2", "two"), [event(2)])
            await publisher.sent_at_least(2)
            await documents.nth_removal(len(expected))
        assert documents.removals == expected
        assert all(doc[OUTBOX_FIELD] == [] for doc in documents.docs.values())


class FailingClears(InMemoryVersionedDocuments):
    """A store refusing every removal at once."""

    def __init__(self) -> None:
        super().__init__("counters")
        self.attempts = 0

    async def clear_published_many(self, published: Mapping[str, Sequence[Document]]) -> set[str]:
        self.attempts += 1
        raise ConnectionError("store unavailable")


async def test_a_relay_whose_removals_fail_backs_off_rather_than_retrying_at_once() -> None:
    documents = FailingClears()
    publisher = CountedSends()
    async with running_relay(
        documents, publisher, poll_interval=0.1, clear_delay=0.01, writers_remove=True
    ) as work:
        await work.add(Counter("c1", "one"), [event(1)])
        await publisher.sent_at_least(1)
        await asyncio.sleep(1.0)
    # Back-off 0.2, 0.4, 0.8 s: a handful of attempts in the second (the due time,
    # always past after a failure, once made it thousands).
    assert 1 <= documents.attempts <= 6
    assert [e.subject for _, e in publisher.sent] == ["case-1"]


async def test_where_writers_remove_new_entries_wait_the_whole_delay_again() -> None:
    documents = RemovalSignal()
    publisher = CountedSends()
    relay = OutboxRelay(documents, publisher, clear_delay=2.0, writers_remove=True)
    plain = UnitOfWork(documents, CounterCodec(), on_commit=relay.on_commit)
    relay.start()
    try:
        await plain.add(Counter("c1", "one"), [event(1)])
        await publisher.sent_at_least(1)
        await asyncio.sleep(1.0)
        await plain.change("c1", bump(1, event(2)))  # no removal by this writer
        await publisher.sent_at_least(2)
        await asyncio.sleep(2.0)  # past case-1's own due time, not case-2's
        assert documents.removals == []
        await documents.nth_removal(1)
    finally:
        await relay.stop(flush=False)
    assert documents.removals == [{"c1"}]
    assert documents.docs["c1"][OUTBOX_FIELD] == []
