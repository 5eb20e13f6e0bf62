"""One unit of work for every service: read a document, let the domain decide, write.

A change is one conditional single-document update, as MongoDB 7 makes atomic: the
filter holds the version the change was decided on, and the update sets the fields of
the new state that differ from that version's (an unchanged field is not sent again),
bumps the version, appends the change's events to the document's outbox and records the
event that caused it (its dedupe key), so a redelivered event changes nothing. When the
version moved meanwhile (another instance or request wrote first) the document is read
again and the domain decides again. After a write with events the relay is woken with
the document's whole outbox, so it publishes at once without reading it back.

Writes of a consumer's batch go to the store together (`TurnBatcher`): new documents as
one unordered insert, changes an event causes as one unordered update. The store counts
an update's matches, not which statement matched: when one missed, every change of that
command reads its document again, and one that was written finds its event key there
(as a redelivery would) and hands the stored outbox to the relay.

Two implementations of the store port, `VersionedDocuments`, keep the same promises, and
one contract suite (shared/tests/test_unit_of_work_contract.py) runs against both:
`MongoVersionedDocuments` (one collection) and `InMemoryVersionedDocuments` (unit tests).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar

import bson
from bson.errors import InvalidDocument
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import (
    COMMAND_SIZE,
    CoalescingReader,
    Document,
    TurnBatcher,
    copy_document,
    insert_each,
    without_documents,
    write_error,
)

#: Fields the unit of work owns in every document it writes.
VERSION_FIELD = "version"
PROCESSED_FIELD = "processed_events"
OUTBOX_FIELD = "outbox"
#: When the oldest unpublished outbox entry was written: indexed, so a relay finds the
#: entries a crashed writer left behind with a range query, never a collection scan.
OUTBOX_SINCE_FIELD = "outbox_since"
RESERVED_FIELDS = frozenset(
    {"_id", VERSION_FIELD, PROCESSED_FIELD, OUTBOX_FIELD, OUTBOX_SINCE_FIELD}
)
#: Marks a field to remove (`$unset`) in what a codec encodes.
UNSET: Any = object()

A = TypeVar("A")


class DocumentNotFoundError(LookupError):
    """No document has this `_id`."""

    def __init__(self, doc_id: str) -> None:
        super().__init__(f"no document {doc_id}")
        self.doc_id = doc_id


class VersionConflictError(Exception):
    """The caller named the version it changes, and the document is at another one."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the document is at version {current}")
        self.current = current


class DuplicateDocumentError(Exception):
    """A unique index refused an insert: `by_id` when another document has its `_id`."""

    def __init__(self, *, by_id: bool) -> None:
        super().__init__("a document with this _id exists" if by_id else "a unique key is taken")
        self.by_id = by_id


class ContentionError(RuntimeError):
    """The document kept changing under the unit of work, attempt after attempt."""


@dataclass(frozen=True)
class Outgoing:
    """An event a change publishes, and the topic it goes to."""

    topic: str
    event: CloudEvent

    def entry(self) -> Document:
        """The outbox entry stored inside the changed document. The event is kept as its
        JSON text: one string to store and read back, where a nested document of a
        dozen fields cost every write of the document more (the local store describes
        each nested field's type in every document it writes)."""
        return {"id": self.event.id, "topic": self.topic, "event": self._text}

    @cached_property
    def _text(self) -> str:
        # Once: a batch's insert stores the entry and its commit hands it to the relay.
        return self.event.model_dump_json()


def entry_event(entry: Mapping[str, Any]) -> CloudEvent:
    """The event an outbox entry holds: its JSON text, or (in an entry written before
    events were kept as text) its fields as a document."""
    event = entry["event"]
    if isinstance(event, str):
        return CloudEvent.model_validate_json(event)
    return CloudEvent.model_validate(event)


@dataclass(frozen=True)
class Decision(Generic[A]):
    """What the domain decided: the new state and the events it publishes."""

    aggregate: A
    events: Sequence[Outgoing] = ()


@dataclass(frozen=True)
class Committed(Generic[A]):
    """The state after `UnitOfWork.change`; `changed` is False when nothing was written
    (the event was processed before, or the domain decided nothing), and also when the
    event's change was written in a command the store could not vouch for (see
    `VersionedDocuments.write`): the state is then as read back."""

    aggregate: A
    changed: bool


@dataclass(frozen=True)
class Write:
    """One conditional write: fields to set and remove, events, the processed event keys.

    With `published` (the ids of the outbox's first entries, as read, which the relay
    has published and not removed yet) the write also removes those, keeping
    `unpublished` (the rest of the outbox as read) before `entries`; it then also
    requires the outbox to be as read, so a removal that got there first makes it miss.
    """

    set: Document
    unset: Sequence[str] = ()
    entries: Sequence[Document] = ()
    #: The keys of the events this write handles (recorded as processed).
    processed: Sequence[str] = ()
    published: Sequence[str] = ()
    unpublished: Sequence[Document] = ()

    def outbox_as_read(self) -> Document:
        """The filter's condition on the outbox when the write removes published entries:
        entries are only appended (with a new version) and removed from the front, so an
        outbox that starts with the first of them and is as long as read is as read."""
        if not self.published:
            return {}
        length = len(self.published) + len(self.unpublished)
        return {
            f"{OUTBOX_FIELD}.0.id": self.published[0],
            f"{OUTBOX_FIELD}.{length}": {"$exists": False},
        }


class PublishedFront(Protocol):
    """What the relay published of a document's outbox and has not removed yet (the
    relay's side of `UnitOfWork(published=...)`)."""

    def published_front(self, doc_id: str, outbox: Sequence[Document]) -> int:
        """How many of `outbox`'s first entries were published and wait for removal."""
        ...

    def removed_by_writer(self, doc_id: str, ids: Sequence[str]) -> None:
        """A write removed these published entries: the relay need not remove them."""
        ...


class VersionedDocuments(Protocol):
    """The store port: versioned documents of one collection, each with its outbox."""

    @property
    def name(self) -> str:
        """The collection's name (metrics and logs)."""
        ...

    async def read(self, doc_id: str, *, for_change: bool = False) -> Document | None:
        """The document, outbox and bookkeeping included, or None. With `for_change` a
        store may answer from the copy it holds of its own last write: the caller writes
        with a version check, so a copy another writer made stale only loses a race; and
        the caller must not change that document (it is the store's copy, not a copy)."""
        ...

    async def insert(self, doc: Document, entries: Sequence[Document]) -> None:
        """Insert a new document (version 1 unless it names one) with its outbox entries;
        raises DuplicateDocumentError when a unique index refuses it."""
        ...

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        """Apply `write` if the document is still at `expected_version` (bumping it) and,
        when the write removes published entries, its outbox is as read; False if not
        (or it is gone). A write with an event key may also answer False when it
        was made but the store could not tell (written in one command with others, one of
        which missed): reading again then finds the event key, as for a redelivery."""
        ...

    async def clear_published(self, doc_id: str, published: Sequence[Document]) -> bool:
        """Remove entries the relay published. True if the outbox was exactly them and is
        now empty; else the entries are removed one by one and the caller reads again.
        With no entries, only drops the outbox time of an outbox that is empty."""
        ...

    async def clear_published_many(self, published: Mapping[str, Sequence[Document]]) -> set[str]:
        """`clear_published` for many documents at once (one command where the store
        allows); returns the ids whose outbox was not exactly their entries (their
        entries were then pulled one by one): read those again. An outbox that starts
        with none of its published entries was emptied of them already and is not named."""
        ...

    async def left_behind(self, older_than: datetime, limit: int) -> list[Document]:
        """At most `limit` documents (`_id` and outbox) whose oldest unpublished entry is
        older than `older_than`: what a crashed writer's relay never published. In no
        promised order: a document's entries go out in order, documents independently."""
        ...


class DocumentCodec(Protocol[A]):
    """Maps a service's aggregate to the fields of its document and back."""

    def id_of(self, aggregate: A) -> str:
        """The document's `_id`."""
        ...

    async def encode(self, aggregate: A) -> Document:
        """The document's own fields (reserved ones are ignored; `UNSET` removes one)."""
        ...

    async def decode(self, doc: Document) -> A:
        """The aggregate a stored document holds."""
        ...


Decide = Callable[[A], Decision[A] | Awaitable[Decision[A] | None] | None]
#: Told after a write with events: the document, its new version and its whole outbox.
OnCommit = Callable[[str, int, list[Document]], None]


#: The (unit of work, document id) turns the running task holds.
_TURNS_HELD: ContextVar[frozenset[tuple[object, str]]] = ContextVar(
    "lintas_unit_of_work_turns", default=frozenset()
)


class UnitOfWork(Generic[A]):
    """Read, decide, write with a version check, retry on a conflict, wake the relay."""

    def __init__(
        self,
        documents: VersionedDocuments,
        codec: DocumentCodec[A],
        *,
        on_commit: OnCommit | None = None,
        published: PublishedFront | None = None,
        attempts: int = 20,
        first_version: Callable[[], int] | None = None,
    ) -> None:
        """`first_version` gives a new document's version (1 without it). Where documents
        are deleted and made again under the same `_id` (a phone's record after an
        erasure), a random one keeps a change decided on the deleted document's version
        from matching the new document's. With `published` (the relay), a change also
        removes the entries the relay published and has not removed yet: a case's next
        change usually comes before the relay's removal, which is then not needed (one
        write of the document fewer)."""
        self.documents = documents
        self._first_version = first_version
        self._codec = codec
        self._on_commit = on_commit
        self._published = published
        self._attempts = attempts
        # doc id -> the change under way and how many wait for their turn after it.
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def _turn(self, doc_id: str) -> AsyncIterator[None]:
        """Changes of one document from this process go one after another: run together
        they would only lose the version check to each other and read again (two
        consumers' events about one case, say). The version check still decides between
        processes."""
        held = _TURNS_HELD.get()
        if (self, doc_id) in held:
            # A change decided inside a change of the same document (never waits for
            # itself): it races as any other writer would, and the version check decides.
            yield
            return
        turn = self._turns.get(doc_id)
        if turn is None:
            turn = self._turns[doc_id] = (asyncio.Lock(), [0])
        lock, waiting = turn
        waiting[0] += 1
        try:
            async with lock:
                token = _TURNS_HELD.set(held | {(self, doc_id)})
                try:
                    yield
                finally:
                    _TURNS_HELD.reset(token)
        finally:
            waiting[0] -= 1
            if not waiting[0]:
                del self._turns[doc_id]

    async def get(self, doc_id: str) -> A | None:
        """The aggregate stored under `doc_id`, or None."""
        doc = await self.documents.read(doc_id)
        return None if doc is None else await self._codec.decode(doc)

    async def add(self, aggregate: A, events: Sequence[Outgoing] = ()) -> None:
        """Store a new aggregate and its events in one insert (DuplicateDocumentError if a
        unique index refuses it)."""
        doc = {k: v for k, v in (await self._codec.encode(aggregate)).items() if v is not UNSET}
        doc["_id"] = self._codec.id_of(aggregate)
        if self._first_version is not None:
            doc[VERSION_FIELD] = self._first_version()
        entries = [e.entry() for e in events]
        await self.documents.insert(doc, entries)
        if entries and self._on_commit is not None:
            self._on_commit(doc["_id"], int(doc.get(VERSION_FIELD, 1)), entries)

    async def change(
        self,
        doc_id: str,
        decide: Decide[A],
        *,
        event_key: str | None = None,
        expected_version: int | None = None,
    ) -> Committed[A]:
        """Apply the domain's decision to `doc_id`, once per `event_key`.

        `decide` gets the current aggregate and returns a `Decision` (or None: nothing to
        write). With `expected_version` (a client's If-Match) a document at another
        version raises VersionConflictError instead of deciding again. Raises
        DocumentNotFoundError, or ContentionError after `attempts` lost races.
        """
        async with self._turn(doc_id):
            return await self._change(doc_id, [(decide, event_key)], expected_version)

    async def change_each(
        self, doc_id: str, steps: Sequence[tuple[Decide[A], str]]
    ) -> Committed[A]:
        """Apply several events' decisions to `doc_id` in one write: each decides on
        what the ones before it decided, in order, and the write records every event key
        (a step whose key the document holds already, or an earlier step had, is left
        out). The same as a `change` per step, one after another, for one write instead
        of several: a consumer's batch often holds more than one event of a document."""
        async with self._turn(doc_id):
            return await self._change(doc_id, steps, None)

    async def _change(
        self,
        doc_id: str,
        steps: Sequence[tuple[Decide[A], str | None]],
        expected_version: int | None,
    ) -> Committed[A]:
        for attempt in range(self._attempts):
            # Only a first attempt may take the store's remembered copy; a client's named
            # version is checked against what is stored.
            remembered = attempt == 0 and expected_version is None
            doc = await self.documents.read(doc_id, for_change=remembered)
            if doc is None:
                raise DocumentNotFoundError(doc_id)
            version = int(doc.get(VERSION_FIELD, 0))
            # Decoded from a copy: a decision that changes a nested value in place must
            # not change `doc` too, which the write compares with (`_stored_as`).
            current = await self._codec.decode(copy_document(doc))
            done = set(doc.get(PROCESSED_FIELD, ()))
            due = [(d, key) for d, key in steps if key is None or key not in done]
            if not due:
                if attempt > 0 and doc.get(OUTBOX_FIELD) and self._on_commit is not None:
                    # Written in a command that could not say so: hand the stored outbox
                    # to the relay now rather than leave it to its search.
                    self._on_commit(doc_id, version, list(doc[OUTBOX_FIELD]))
                return Committed(current, changed=False)
            if expected_version is not None and version != expected_version:
                raise VersionConflictError(version)
            aggregate, decided_any = current, False
            events: list[Outgoing] = []
            keys: list[str] = []
            for decide, key in due:
                if key is not None and key in done:
                    continue  # twice in `steps`
                decided = decide(aggregate)
                decision = await decided if inspect.isawaitable(decided) else decided
                if decision is not None:
                    aggregate, decided_any = decision.aggregate, True
                    events.extend(decision.events)
                if key is not None:
                    keys.append(key)
                    done.add(key)
            if not decided_any and not keys:
                return Committed(current, changed=False)
            encoded = await self._codec.encode(aggregate) if decided_any else {}
            entries = [e.entry() for e in events]
            outbox: list[Document] = list(doc.get(OUTBOX_FIELD) or ())
            published = 0
            if outbox and self._published is not None:
                published = self._published.published_front(doc_id, outbox)
            write = Write(
                set={
                    k: v
                    for k, v in encoded.items()
                    if v is not UNSET and k not in RESERVED_FIELDS and not _stored_as(doc, k, v)
                },
                unset=[
                    k
                    for k, v in encoded.items()
                    if v is UNSET and k not in RESERVED_FIELDS and k in doc
                ],
                entries=entries,
                processed=tuple(keys),
                published=[e["id"] for e in outbox[:published]],
                unpublished=outbox[published:],
            )
            if await self.documents.write(doc_id, version, write):
                if write.published and self._published is not None:
                    self._published.removed_by_writer(doc_id, write.published)
                if entries and self._on_commit is not None:
                    self._on_commit(doc_id, version + 1, [*outbox[published:], *entries])
                return Committed(aggregate, changed=decided_any)
            if expected_version is not None:
                raise VersionConflictError(version + 1)
        raise ContentionError(f"{self.documents.name} {doc_id} kept changing")


def _now() -> datetime:
    return datetime.now(UTC)


def _stored_as(doc: Document, name: str, value: Any) -> bool:
    """Whether the document, at the version the change is decided on, already holds
    `value` in `name`, byte for byte as BSON (types and field order included): such a
    field is left out of the write. Sound because every write of a field other than the
    unit of work's own moves the version, so the condition on it covers the field."""
    if name not in doc:
        return False
    try:
        return bson.encode({"v": doc[name]}) == bson.encode({"v": value})
    except (InvalidDocument, TypeError, OverflowError):
        return False


def applied(doc: Document, expected_version: int, write: Write, now: datetime) -> Document:
    """The document as `write` leaves it (what MongoDB's update makes of it): a new one,
    sharing the values the write leaves alone; `doc` is not changed."""
    after = {**doc, **copy_document(write.set)}
    for name in write.unset:
        after.pop(name, None)
    after[VERSION_FIELD] = expected_version + 1
    if write.published:
        after[OUTBOX_FIELD] = [
            *map(copy_document, write.unpublished),
            *map(copy_document, write.entries),
        ]
        # With unpublished entries left, the time stays (the oldest one's, or earlier).
        if not write.unpublished and write.entries:
            after[OUTBOX_SINCE_FIELD] = now
        elif not write.unpublished:
            after.pop(OUTBOX_SINCE_FIELD, None)
    elif write.entries:
        after[OUTBOX_FIELD] = [*doc.get(OUTBOX_FIELD, ()), *map(copy_document, write.entries)]
        after[OUTBOX_SINCE_FIELD] = min(doc.get(OUTBOX_SINCE_FIELD) or now, now)
    if write.processed:
        after[PROCESSED_FIELD] = [*doc.get(PROCESSED_FIELD, ()), *write.processed]
    return after


class MongoVersionedDocuments:
    """`VersionedDocuments` on one MongoDB collection (and the local FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        clock: Callable[[], datetime] = _now,
        *,
        remember: int = 0,
    ) -> None:
        """`remember`: how many documents' last written state to keep, so the next change
        of one skips its read (`read(for_change=True)`). Only for a collection whose
        every write goes through this object and bumps the version (others' writes then
        only make a copy stale, and a stale copy loses its version check)."""
        self._collection = collection
        self._clock = clock
        self._remember = remember
        # A consumer's batch reaches these steps side by side: one command for them all.
        self._reads = CoalescingReader(collection)
        self._inserts: TurnBatcher[Document, DuplicateDocumentError | WriteError | None] = (
            TurnBatcher(self._insert_command, COMMAND_SIZE)
        )
        self._event_writes: TurnBatcher[tuple[Document, Document], bool] = TurnBatcher(
            self._write_command, COMMAND_SIZE
        )
        # doc id -> the document as stored after this object's last write (BSON round
        # trip: the store's datetimes, to the millisecond).
        self._recent: OrderedDict[str, Document] = OrderedDict()

    @property
    def name(self) -> str:
        """The collection's name."""
        return self._collection.name

    @property
    def collection(self) -> AsyncCollection[Document]:
        """The collection, for a repository's queries that are not by `_id`."""
        return self._collection

    async def ensure_indexes(self) -> None:
        """The index the relay's search for left-behind entries reads; documents written
        before it get their outbox time (a one-off scan while any is missing)."""
        await self._collection.create_index(
            [(OUTBOX_SINCE_FIELD, ASCENDING)], name=OUTBOX_SINCE_FIELD
        )
        await self._collection.update_many(
            {f"{OUTBOX_FIELD}.0": {"$exists": True}, OUTBOX_SINCE_FIELD: {"$exists": False}},
            {"$set": {OUTBOX_SINCE_FIELD: self._clock()}},
        )

    async def read(self, doc_id: str, *, for_change: bool = False) -> Document | None:
        """The document by `_id` (for a change: the copy of this object's last write, if
        it keeps one). The reads asked for side by side (a consumer batch's cases) go
        as one query."""
        if for_change and doc_id in self._recent:
            # Not copied (a few percent of intake's CPU): remembered documents are never
            # changed in place, each write remembers a new one (`applied`).
            self._recent.move_to_end(doc_id)
            return self._recent[doc_id]
        doc = await self._reads.find(doc_id)
        if for_change and doc is not None:
            # As the store gave it back already; the caller does not change it either.
            self._keep_stored(doc_id, doc)
        return doc

    def _as_stored(self, doc: Document) -> Document:
        """`doc` as the store gives it back (a BSON round trip: datetimes to the
        millisecond, tuples as lists), a copy."""
        options = self._collection.codec_options
        return bson.decode(bson.encode(doc, codec_options=options), options)

    def _keep(self, doc_id: str, doc: Document | None) -> None:
        if not self._remember:
            return
        if doc is None:
            self._recent.pop(doc_id, None)
            return
        self._keep_stored(doc_id, self._as_stored(doc))

    def _keep_stored(self, doc_id: str, doc: Document) -> None:
        """Remember `doc`, which is as stored already."""
        if not self._remember:
            return
        self._recent[doc_id] = doc
        self._recent.move_to_end(doc_id)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)

    async def insert(self, doc: Document, entries: Sequence[Document]) -> None:
        """Insert with version 1 (unless named), the outbox and its time; the inserts
        asked for side by side go in one command (`insert_many`)."""
        stored = {VERSION_FIELD: 1, **doc, OUTBOX_FIELD: list(entries)}
        if entries:
            stored[OUTBOX_SINCE_FIELD] = self._clock()
        refused = await self._inserts.call(stored)
        if refused is not None:
            raise refused
        self._keep(doc["_id"], stored)

    async def insert_many(self, docs: Sequence[Document]) -> list[DuplicateDocumentError | None]:
        """One unordered `insert_many` of whole documents (version and outbox included):
        each is stored or refused on its own (DuplicateDocumentError), in order; another
        error of the store's is raised."""
        results = await self._insert_command(list(docs))
        failed = [r for r in results if isinstance(r, WriteError)]
        if failed:
            raise failed[0]
        return [r if isinstance(r, DuplicateDocumentError) else None for r in results]

    async def _insert_command(
        self, docs: list[Document]
    ) -> list[DuplicateDocumentError | WriteError | None]:
        """For each document: None (stored), DuplicateDocumentError, or the store's error
        for it alone. When the server does not say which unique index refused (FerretDB
        v1), one `$in` read of the refused ids tells a taken `_id` from the rest."""
        results: list[DuplicateDocumentError | WriteError | None] = []
        unknown: list[int] = []
        for index, error in enumerate(await insert_each(self._collection, docs)):
            pattern = None if error is None else (error.details or {}).get("keyPattern")
            if not isinstance(error, DuplicateKeyError):
                results.append(error)
            elif pattern is None:
                results.append(None)
                unknown.append(index)
            else:
                results.append(DuplicateDocumentError(by_id=set(pattern) == {"_id"}))
        if unknown:
            ids = [docs[i]["_id"] for i in unknown]
            # An id refused here and stored is another's, or one given twice in `docs`
            # (its first stored it): either way, the `_id` is taken.
            found = {
                d["_id"] async for d in self._collection.find({"_id": {"$in": ids}}, {"_id": 1})
            }
            for i in unknown:
                results[i] = DuplicateDocumentError(by_id=docs[i]["_id"] in found)
        return results

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        """An update whose filter holds the version: `update_one`, or for a change with
        an event key one statement of a batch's `update` command (`_write_command`)."""
        now = self._clock()
        update: Document = {"$set": {**write.set, VERSION_FIELD: expected_version + 1}}
        if write.unset:
            update["$unset"] = {name: "" for name in write.unset}
        push: Document = {}
        if write.published:
            # The outbox as read less what was published: set whole (one field cannot be
            # pushed to and pulled from in one update), under `outbox_as_read`.
            update["$set"][OUTBOX_FIELD] = [*write.unpublished, *write.entries]
            if not write.unpublished:
                if write.entries:
                    update["$set"][OUTBOX_SINCE_FIELD] = now
                else:
                    update.setdefault("$unset", {})[OUTBOX_SINCE_FIELD] = ""
        elif write.entries:
            push[OUTBOX_FIELD] = {"$each": list(write.entries)}
            # Keeps the oldest unpublished entry's time when there is one.
            update["$min"] = {OUTBOX_SINCE_FIELD: now}
        if write.processed:
            push[PROCESSED_FIELD] = {"$each": list(write.processed)}
        if push:
            update["$push"] = push
        known = self._recent.pop(doc_id, None)
        where = {"_id": doc_id, VERSION_FIELD: expected_version, **write.outbox_as_read()}
        if not write.processed:
            matched = (await self._collection.update_one(where, update)).matched_count == 1
        else:
            # An event's change: those of a consumer's batch go in one command.
            matched = await self._event_writes.call((where, update))
        if not matched:
            return False
        if known is not None and known.get(VERSION_FIELD) == expected_version:
            # `known` is as stored: only what the write brings goes through BSON (the
            # whole document's round trip was 4% of intake's CPU).
            added = self._as_stored({"set": write.set, "entries": list(write.entries), "now": now})
            as_stored = replace(write, set=added["set"], entries=added["entries"])
            self._keep_stored(doc_id, applied(known, expected_version, as_stored, added["now"]))
        return True

    async def _write_command(
        self, writes: list[tuple[Document, Document]]
    ) -> list[bool | WriteError]:
        """One `update` command for the event changes asked for side by side. The server
        counts the matches, not which: when one missed, each answers False and its change
        reads its document again (one that was made finds its event key and hands the
        stored outbox to the relay)."""
        if len(writes) == 1:
            where, update = writes[0]
            return [(await self._collection.update_one(where, update)).matched_count == 1]
        try:
            result = await self._collection.bulk_write(
                [UpdateOne(where, update) for where, update in writes], ordered=False
            )
        except BulkWriteError as exc:
            # A statement the store refused fails its own change only.
            if exc.details.get("writeConcernErrors"):
                raise without_documents(exc) from None
            refused = {e["index"]: write_error(e) for e in exc.details.get("writeErrors", [])}
            every = exc.details.get("nMatched", 0) == len(writes) - len(refused)
            return [refused.get(i, every) for i in range(len(writes))]
        return [result.matched_count == len(writes)] * len(writes)

    async def clear_published(self, doc_id: str, published: Sequence[Document]) -> bool:
        """One update empties an outbox that is exactly `published` (`_exactly`) and drops
        its time; else the entries are pulled one by one."""
        if not published:
            # Nothing to remove: drop a time left on an empty outbox (a crash between the
            # removals and the time's below).
            await self._collection.update_one(
                {"_id": doc_id, f"{OUTBOX_FIELD}.0": {"$exists": False}},
                {"$unset": {OUTBOX_SINCE_FIELD: ""}},
            )
            return True
        known = self._recent.pop(doc_id, None)
        result = await self._collection.update_one(_exactly(doc_id, published), _EMPTIED)
        if result.matched_count == 1:
            self._keep_emptied(doc_id, known)
            return True
        for entry in published:
            # Whole values: FerretDB v1's $pull matches no conditions on sub-fields.
            await self._collection.update_one({"_id": doc_id}, {"$pull": {OUTBOX_FIELD: entry}})
        await self._collection.update_one(
            {"_id": doc_id, f"{OUTBOX_FIELD}.0": {"$exists": False}},
            {"$unset": {OUTBOX_SINCE_FIELD: ""}},
        )
        return False

    async def clear_published_many(self, published: Mapping[str, Sequence[Document]]) -> set[str]:
        """Unordered `update` commands of exact clears, `COMMAND_SIZE` documents
        each. The server counts the matches, not which: when some missed, the outboxes
        still starting with one of their published entries (a writer may have removed
        the first ones) are the ones left, and each goes through `clear_published`."""
        items = [(doc_id, entries) for doc_id, entries in published.items() if entries]
        missed: set[str] = set()
        for start in range(0, len(items), COMMAND_SIZE):
            missed |= await self._clear_command(dict(items[start : start + COMMAND_SIZE]))
        return missed

    async def _clear_command(self, items: dict[str, Sequence[Document]]) -> set[str]:
        known = {doc_id: self._recent.pop(doc_id, None) for doc_id in items}
        result = await self._collection.bulk_write(
            [UpdateOne(_exactly(doc_id, entries), _EMPTIED) for doc_id, entries in items.items()],
            ordered=False,
        )
        if result.matched_count == len(items):
            for doc_id in items:
                self._keep_emptied(doc_id, known[doc_id])
            return set()
        cursor = self._collection.find({"_id": {"$in": list(items)}}, {OUTBOX_FIELD: 1})
        left = [
            doc["_id"]
            async for doc in cursor
            if (doc.get(OUTBOX_FIELD) or [{}])[0].get("id") in {e["id"] for e in items[doc["_id"]]}
        ]
        return {doc_id for doc_id in left if not await self.clear_published(doc_id, items[doc_id])}

    def _keep_emptied(self, doc_id: str, known: Document | None) -> None:
        if known is not None:
            emptied = {k: v for k, v in known.items() if k != OUTBOX_SINCE_FIELD}
            emptied[OUTBOX_FIELD] = []
            self._keep_stored(doc_id, emptied)

    async def left_behind(self, older_than: datetime, limit: int) -> list[Document]:
        """A range query on the `outbox_since` index, in the index's order on MongoDB.
        Not sorted: FerretDB v1 sorts only after reading every match, where the limit
        stops its read (deploy/README.md, the outbox search)."""
        cursor = self._collection.find(
            {OUTBOX_SINCE_FIELD: {"$lte": older_than}}, {OUTBOX_FIELD: 1, OUTBOX_SINCE_FIELD: 1}
        ).limit(limit)
        return [doc async for doc in cursor]


#: Entries are only appended, and only removed from the front: an outbox that starts
#: with the first published entry and is no longer than what was published is exactly it.
def _exactly(doc_id: str, published: Sequence[Document]) -> Document:
    return {
        "_id": doc_id,
        f"{OUTBOX_FIELD}.0.id": published[0]["id"],
        f"{OUTBOX_FIELD}.{len(published)}": {"$exists": False},
    }


_EMPTIED: Document = {"$set": {OUTBOX_FIELD: []}, "$unset": {OUTBOX_SINCE_FIELD: ""}}


@dataclass
class InMemoryVersionedDocuments:
    """`VersionedDocuments` in a dict, with the same promises (unit tests and fakes).

    `unique` names the field tuples that must be unique (besides `_id`), as the real
    collection's unique indexes do; documents missing a field are compared as None.
    """

    name: str = "documents"
    unique: Iterable[tuple[str, ...]] = ()
    clock: Callable[[], datetime] = _now
    docs: dict[str, Document] = field(default_factory=dict)
    writes: int = 0

    async def read(self, doc_id: str, *, for_change: bool = False) -> Document | None:
        """A copy of the document (always the stored one)."""
        doc = self.docs.get(doc_id)
        return None if doc is None else copy_document(doc)

    async def insert(self, doc: Document, entries: Sequence[Document]) -> None:
        """Insert, refusing a taken `_id` or unique key."""
        if doc["_id"] in self.docs:
            raise DuplicateDocumentError(by_id=True)
        for fields in self.unique:
            key = tuple(doc.get(f) for f in fields)
            if any(tuple(d.get(f) for f in fields) == key for d in self.docs.values()):
                raise DuplicateDocumentError(by_id=False)
        stored = copy_document({VERSION_FIELD: 1, **doc, OUTBOX_FIELD: list(entries)})
        if entries:
            stored[OUTBOX_SINCE_FIELD] = self.clock()
        self.docs[doc["_id"]] = stored
        self.writes += 1

    async def write(self, doc_id: str, expected_version: int, write: Write) -> bool:
        """Apply the write if the version holds (and the outbox is as read, when the
        write removes published entries)."""
        doc = self.docs.get(doc_id)
        if doc is None or doc.get(VERSION_FIELD, 0) != expected_version:
            return False
        if write.published:
            as_read = [*write.published, *(e["id"] for e in write.unpublished)]
            outbox = doc.get(OUTBOX_FIELD) or [{}]
            # As `Write.outbox_as_read`: the first entry, and no longer than read.
            if outbox[0].get("id") != as_read[0] or len(outbox) > len(as_read):
                return False
        self.docs[doc_id] = applied(doc, expected_version, write, self.clock())
        self.writes += 1
        return True

    async def clear_published(self, doc_id: str, published: Sequence[Document]) -> bool:
        """Empty the outbox if it is exactly `published`; else remove those entries."""
        doc = self.docs.get(doc_id)
        if doc is None:
            return False
        outbox = doc.get(OUTBOX_FIELD, [])
        if not published:
            if not outbox:
                doc.pop(OUTBOX_SINCE_FIELD, None)
            return True
        if [e["id"] for e in outbox] == [e["id"] for e in published]:
            doc[OUTBOX_FIELD] = []
            doc.pop(OUTBOX_SINCE_FIELD, None)
            return True
        ids = {e["id"] for e in published}
        doc[OUTBOX_FIELD] = [e for e in outbox if e["id"] not in ids]
        if not doc[OUTBOX_FIELD]:
            doc.pop(OUTBOX_SINCE_FIELD, None)
        return False

    async def clear_published_many(self, published: Mapping[str, Sequence[Document]]) -> set[str]:
        """As the Mongo store: an outbox starting with none of its published entries was
        emptied of them already; the others go through `clear_published`."""
        missed = set()
        for doc_id, entries in published.items():
            outbox = self.docs.get(doc_id, {}).get(OUTBOX_FIELD) or [{}]
            starts = outbox[0].get("id") in {e["id"] for e in entries}
            if starts and not await self.clear_published(doc_id, entries):
                missed.add(doc_id)
        return missed

    async def left_behind(self, older_than: datetime, limit: int) -> list[Document]:
        """Documents whose outbox time is at or before `older_than`, oldest first."""
        waiting = [d for d in self.docs.values() if d.get(OUTBOX_SINCE_FIELD) is not None]
        waiting = [d for d in waiting if d[OUTBOX_SINCE_FIELD] <= older_than]
        waiting.sort(key=lambda d: d[OUTBOX_SINCE_FIELD])
        return [
            {"_id": d["_id"], OUTBOX_FIELD: [copy_document(e) for e in d.get(OUTBOX_FIELD, [])]}
            for d in waiting[:limit]
        ]
