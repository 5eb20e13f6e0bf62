"""The transactional outbox relay: publishes the events a write left in its document.

A service never publishes to Kafka in the same breath as it writes MongoDB (a dual
write: one can succeed while the other fails). The events ride inside the changed
document, in its `outbox` array, written by the same single-document update
(`lintas_shared.unit_of_work`). The relay publishes each entry (idempotent producer,
acks=all) and only then removes it. A crash between the two publishes the entry again on
restart; consumers are idempotent on (ce_source, ce_id), so that duplicate changes nothing.

- After a write, the unit of work hands the relay the document's whole outbox
  (`wake(doc_id, version, entries)`): it publishes without reading the document back.
  Published entries are removed a little later (`clear_delay`), many documents' in one
  command, each by a conditional update that empties an outbox that is exactly them. A
  task of its own removes them while publishing goes on: behind a bulk import, awaiting
  each removal before publishing more held intake's relay to about 75 events a second.
- Entries a crashed instance never published are found by a range query on the indexed
  `outbox_since` (the time of a document's oldest unpublished entry), once they are older
  than `grace` seconds, so an instance never races a live writer's own relay for them.
- A document's entries are published in order, one document at a time; up to
  `concurrency` documents are published at once, so the broker's acknowledgements overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from lintas_shared.background import BackgroundTask
from lintas_shared.envelope import CloudEvent
from lintas_shared.logging import get_logger
from lintas_shared.metrics import OUTBOX, OUTBOX_RELAY_FAILURES
from lintas_shared.mongo import Document
from lintas_shared.tracing import producer_span
from lintas_shared.unit_of_work import (
    OUTBOX_FIELD,
    OUTBOX_SINCE_FIELD,
    Outgoing,
    VersionedDocuments,
    entry_event,
)

log = get_logger(__name__)

__all__ = ["OUTBOX_FIELD", "EventPublisher", "OutboxRelay", "entry_event", "outbox_entry"]


class EventPublisher(Protocol):
    """Where the relay sends events (Kafka in production, a list in unit tests)."""

    async def publish(self, topic: str, event: CloudEvent) -> None: ...


def outbox_entry(topic: str, event: CloudEvent) -> Document:
    """One outbox entry, as stored inside the changed document."""
    return Outgoing(topic, event).entry()


@dataclass
class _Waiting:
    """A document's entries known to wait: from a writer (with its version) or a search."""

    version: int | None
    entries: list[Document] | None  # None: read the document
    since: float
    # What was published of it may not be noted for removal (a removal missed it, or a
    # read of it went stale): a writer's hand-over, which cannot tell, does not replace
    # the read.
    must_read: bool = False


class OutboxRelay:
    """Publishes the outbox entries of one collection of versioned documents."""

    def __init__(
        self,
        documents: VersionedDocuments,
        publisher: EventPublisher,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 200,
        concurrency: int = 16,
        grace: float = 30.0,
        search_interval: float = 10.0,
        clear_delay: float = 1.0,
        keep_entries: int = 5000,
    ) -> None:
        self._documents = documents
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._grace = grace
        self._search_interval = search_interval
        self._clear_delay = clear_delay
        # Hand-overs whose entries are kept in memory, at most: beyond it (a bulk import
        # outrunning the relay) only the id is kept and the document is read when its
        # turn comes, so memory stays flat however far behind the relay falls.
        self._keep_entries = keep_entries
        self._waiting: dict[str, _Waiting] = {}
        # Published entries not removed yet, by document, in outbox order (the outbox's
        # front, as far as this relay knows), and when the oldest of them must go.
        self._clearing: dict[str, list[Document]] = {}
        self._clear_due: float | None = None
        self._wake = asyncio.Event()
        self._search_now = asyncio.Event()
        self._remove_now = asyncio.Event()
        self._removal_ended = asyncio.Event()
        self._removal_failed: Exception | None = None
        self._loop = BackgroundTask("outbox-relay", self._run)
        self._searcher = BackgroundTask("outbox-search", self._search_forever)
        self._remover = BackgroundTask("outbox-removal", self._remove_forever)
        self._lock = asyncio.Lock()
        # One removal at a time, in the order they were taken: a document's later
        # removal must not reach the store before its earlier one.
        self._removal_lock = asyncio.Lock()
        # Entries this relay published and removed: a later write's hand-over still lists
        # them when it read the document before they were removed (removal bumps no
        # version), and they must not go out twice.
        self._done: OrderedDict[str, None] = OrderedDict()
        # The last removals' entries by document, by the removal's number: a document
        # read while one was under way may still list what it took out.
        self._removals = 0
        self._removal_under_way = False
        self._removal_log: deque[tuple[int, dict[str, set[str]]]] = deque(maxlen=64)
        self.published = 0

    def wake(
        self,
        doc_id: str | None = None,
        version: int | None = None,
        entries: Sequence[Document] | None = None,
    ) -> None:
        """Publish now: this document's `entries` (its whole outbox at `version`, as the
        writer knows it), or the document as stored (no entries), or (no id) search for
        entries left behind."""
        if doc_id is None:
            self._search_now.set()
        else:
            known = self._waiting.get(doc_id)
            since = time.time() if known is None else known.since
            if known is None or (
                not known.must_read
                and (version is None or known.version is None or version >= known.version)
            ):
                # A later write's outbox holds every entry of an earlier one not yet published.
                held = entries
                if known is None and len(self._waiting) >= self._keep_entries:
                    held = None  # read when its turn comes
                self._waiting[doc_id] = _Waiting(
                    version, None if held is None else list(held), since
                )
        self._wake.set()

    def on_commit(self, doc_id: str, version: int, entries: list[Document]) -> None:
        """The unit of work's hook (`UnitOfWork(on_commit=relay.on_commit)`)."""
        self.wake(doc_id, version, entries)

    @property
    def collection_name(self) -> str:
        """The collection whose outbox this relay publishes."""
        return self._documents.name

    @property
    def backlogged(self) -> bool:
        """More hand-overs wait than one pass takes at a time. Searching for entries left
        behind then waits: the relay has work, and while it is behind every document it
        has not reached yet is "older than grace", so each search would read and sort them
        all to return its first few (a 100,000-row import left 86,300 waiting, and the
        store spent its CPU on those searches)."""
        return len(self._waiting) >= self._batch_size

    async def search_left_behind(self) -> int:
        """Look for entries older than `grace` (an index range read) and queue them, unless
        `backlogged`; returns how many documents were found."""
        if self.backlogged:
            return 0
        return await self._search(datetime.now(UTC) - timedelta(seconds=self._grace))

    def pending(self) -> tuple[int, float | None]:
        """Documents known to hold unpublished entries, and the oldest one's Unix time."""
        return len(self._waiting), min((w.since for w in self._waiting.values()), default=None)

    async def relay_once(self, *, search: bool = True) -> int:
        """Publish what writers handed over, and with `search` what was left behind
        (`grace` ignored: everything waiting), then remove it from the outboxes; returns
        how many entries were published."""
        return await self._pass(search=search, clear_now=True)

    async def _pass(self, *, search: bool, clear_now: bool) -> int:
        async with self._lock:  # the loop and a final flush must not interleave
            if search:
                await self._search(older_than=datetime.now(UTC))
            count = 0
            while self._waiting:
                batch = dict(itertools.islice(self._waiting.items(), self._batch_size))
                for doc_id in batch:
                    del self._waiting[doc_id]
                try:
                    count += await self._publish_batch(batch)
                except BaseException:
                    for doc_id, waiting in batch.items():  # nothing is forgotten on failure
                        self._waiting.setdefault(doc_id, _Waiting(None, None, waiting.since))
                    raise
                if len(self._clearing) >= self._batch_size:
                    # Far behind, a pass lasts as long as writers hand over more: what it
                    # published is removed as it goes, not held (in memory and in the
                    # outboxes) until the pass ends.
                    await self._make_room()
            self.published += count
            if clear_now:
                async with self._removal_lock:
                    await self._clear()
            return count

    async def _make_room(self) -> None:
        """Have what was published removed: by the removal task while this pass goes on
        publishing, waiting only while twice a pass's batch waits for removal (memory and
        the stored outboxes stay bounded); inline when the relay is not running."""
        if not self._remover.started:
            async with self._removal_lock:
                await self._clear()
            return
        self._remove_now.set()
        while len(self._clearing) >= 2 * self._batch_size:
            self._removal_ended.clear()
            await self._removal_ended.wait()
            if self._removal_failed is not None:
                raise self._removal_failed  # the loop backs off; the entries are kept

    def _clear_is_due(self) -> bool:
        return self._clear_due is not None and time.monotonic() >= self._clear_due

    async def _remove_forever(self) -> None:
        """Removes what was published: at once when a batch's worth waits, else once
        the oldest has waited `clear_delay`; after a failure, again after a back-off."""
        backoff = self._poll_interval
        while True:
            if len(self._clearing) < self._batch_size and not self._clear_is_due():
                timeout = None if self._clear_due is None else self._clear_due - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._remove_now.wait(), timeout)
                self._remove_now.clear()
                continue
            try:
                async with self._removal_lock:
                    await self._clear()
                self._removal_failed = None
                backoff = self._poll_interval
            except Exception as exc:
                log.warning("outbox removal failed", error=type(exc).__name__)
                OUTBOX_RELAY_FAILURES.labels(self.collection_name).inc()
                self._removal_failed = exc
            self._removal_ended.set()
            if self._removal_failed is not None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _clear(self) -> None:
        """Remove the published entries from their outboxes, in one command; documents
        whose outbox was not exactly them are read again (their slow path ran)."""
        clearing, self._clearing, self._clear_due = self._clearing, {}, None
        if not clearing:
            return
        self._removals += 1
        self._removal_under_way = True
        self._removal_log.append(
            (
                self._removals,
                {doc_id: {e["id"] for e in entries} for doc_id, entries in clearing.items()},
            )
        )
        try:
            missed = await self._documents.clear_published_many(clearing)
        except BaseException:
            for doc_id, entries in clearing.items():  # kept for the next removal
                self._note_front(doc_id, entries, first=True)
            self._clear_due = time.monotonic()
            self._remove_now.set()
            raise
        finally:
            self._removal_under_way = False
        for doc_id in missed:
            self._read_again(doc_id, time.time())
        if missed:
            self._wake.set()

    def _read_again(self, doc_id: str, since: float) -> None:
        """Queue the document to be read as stored, whatever waits for it already."""
        known = self._waiting.get(doc_id)
        self._waiting[doc_id] = _Waiting(
            None, None, since if known is None else min(since, known.since), must_read=True
        )

    def _note_front(self, doc_id: str, entries: list[Document], *, first: bool) -> None:
        """Note published entries for removal beside those noted already for the document:
        `first`, ahead of them (a failed removal's, noted before), else after them."""
        noted = self._clearing.get(doc_id, [])
        ids = {e["id"] for e in (noted if not first else entries)}
        if first:
            front = [*entries, *(e for e in noted if e["id"] not in ids)]
        else:
            front = [*noted, *(e for e in entries if e["id"] not in ids)]
        if not front:
            return
        self._clearing[doc_id] = front
        if self._clear_due is None:
            self._clear_due = time.monotonic() + self._clear_delay
            self._remove_now.set()

    async def _search(self, older_than: datetime) -> int:
        found = await self._documents.left_behind(older_than, self._batch_size)
        for doc in found:
            if doc["_id"] not in self._waiting:
                self._waiting[doc["_id"]] = _Waiting(None, None, _oldest_entry_time(doc))
        return len(found)

    async def _publish_batch(self, batch: dict[str, _Waiting]) -> int:
        """Publish these documents, `concurrency` at a time; a failure is raised after the
        documents in flight finish (their state is then read again)."""
        semaphore = asyncio.Semaphore(self._concurrency)
        failed: list[str] = []

        async def one(doc_id: str, waiting: _Waiting) -> int:
            async with semaphore:
                try:
                    return await self._publish(doc_id, waiting)
                except Exception:
                    failed.append(doc_id)
                    raise

        results = await asyncio.gather(
            *(one(d, w) for d, w in batch.items()), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for doc_id in failed:
            self._waiting.setdefault(doc_id, _Waiting(None, None, batch[doc_id].since))
        if errors:
            raise errors[0]
        return sum(r for r in results if isinstance(r, int))

    async def _publish(self, doc_id: str, waiting: _Waiting) -> int:
        """Publish a document's entries not published yet, in order, and note them for
        removal with the ones already waiting for it: the outbox's front, in order."""
        noted = self._clearing.pop(doc_id, [])
        # The first removal that may change the document after it is read.
        since = self._removals + (0 if self._removal_under_way else 1)
        if waiting.entries is None:
            doc = await self._documents.read(doc_id)
            outbox = [] if doc is None else list(doc.get(OUTBOX_FIELD) or [])
            if doc is not None and not outbox and doc.get(OUTBOX_SINCE_FIELD) is not None:
                await self._documents.clear_published(doc_id, [])  # a stale time
        else:
            # A writer's hand-over: its outbox as read, so it may list entries removed
            # since (removal bumps no version); those are among the published ones.
            outbox = waiting.entries
        fresh = [e for e in outbox if e["id"] not in self._done]
        sent: list[Document] = []
        try:
            for entry in fresh:
                event = entry_event(entry)
                # A child of the context the event was created in (the HTTP request or
                # the consumer that caused it), however much later this runs.
                with producer_span(entry["topic"], event.type, event.id, event.traceparent):
                    await self._publisher.publish(entry["topic"], event)
                _remember(self._done, [entry])
                sent.append(entry)
        except BaseException:
            # Still to be removed, after what a failed removal put back meanwhile.
            self._note_front(doc_id, [*noted, *sent], first=False)
            raise
        if waiting.entries is None:
            # As stored, but the removals under way since the read may have taken
            # entries out: the front starts after them. Too far back to tell (a publish
            # that waited long): read it again.
            taken = self._taken_since(doc_id, since)
            if taken is None:
                self._read_again(doc_id, waiting.since)
                return len(fresh)
            front = [e for e in outbox if e["id"] not in taken]
        else:
            # What was noted, then what this publish added. Entries being removed right
            # now are in neither: if that removal misses (this writer's entries made the
            # outbox longer), the document is read again.
            ids = {e["id"] for e in noted}
            front = [*noted, *(e for e in fresh if e["id"] not in ids)]
        # After what a removal that failed meanwhile put back (publishing awaited the
        # broker): those entries are ahead of these in the outbox.
        self._note_front(doc_id, front, first=False)
        return len(fresh)

    def _taken_since(self, doc_id: str, since: int) -> set[str] | None:
        """The document's entries in removals numbered `since` or later; None when the
        log no longer reaches back that far."""
        if since > self._removals:
            return set()
        if not self._removal_log or self._removal_log[0][0] > since:
            return None
        taken: set[str] = set()
        for number, entries in self._removal_log:
            if number >= since:
                taken |= entries.get(doc_id, set())
        return taken

    async def _run(self) -> None:
        """The publishing loop: what writers hand over and searches find."""
        backoff = self._poll_interval
        while True:
            try:
                await self._pass(search=False, clear_now=False)
                backoff = self._poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Broker or store unavailable: keep the entries and try again later.
                log.warning("outbox relay pass failed", error=type(exc).__name__)
                OUTBOX_RELAY_FAILURES.labels(self.collection_name).inc()
                backoff = min(backoff * 2, 30.0)
            if not self._waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            else:
                await asyncio.sleep(0 if backoff == self._poll_interval else backoff)
            self._wake.clear()

    async def _search_forever(self) -> None:
        """Every `search_interval`, `search_left_behind`; wakes the loop for what it finds."""
        while True:
            try:
                if await self.search_left_behind():
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox search failed", error=type(exc).__name__)
                OUTBOX_RELAY_FAILURES.labels(self.collection_name).inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._search_now.wait(), timeout=self._search_interval)
            self._search_now.clear()

    def start(self) -> None:
        """Run the relay in the background."""
        if not self._loop.started:
            OUTBOX.track(self)
            self._loop.start()
            self._searcher.start()
            self._remover.start()

    async def stop(self, *, flush: bool = True) -> None:
        """Stop; by default publish what is pending first (graceful shutdown). What was
        published is removed from the outboxes either way."""
        if self._searcher.started:
            self._searcher.cancel()
            await self._searcher.stop()
        if self._loop.started:
            # Let a pass in flight finish: cancelling it between a publish and its removal
            # would publish that entry again at the next start.
            async with self._lock:
                self._loop.cancel()
            await self._loop.stop()
        if self._remover.started:
            async with self._removal_lock:  # a removal in flight finishes
                self._remover.cancel()
            await self._remover.stop()
        try:
            if flush:
                # Only what this process's writers handed over: a search now would take
                # other instances' fresh entries too (they publish them themselves).
                await self.relay_once(search=False)
            else:
                # What went out is removed either way: left, it would go out again.
                async with self._lock, self._removal_lock:
                    await self._clear()
        except Exception as exc:
            log.warning("outbox flush at shutdown failed", error=type(exc).__name__)
        OUTBOX.untrack(self)


def _remember(ids: OrderedDict[str, None], entries: Iterable[Document], keep: int = 10_000) -> None:
    """Add the entries' ids to a bounded record, forgetting the oldest."""
    for entry in entries:
        ids[entry["id"]] = None
    while len(ids) > keep:
        ids.popitem(last=False)


def _oldest_entry_time(doc: Document) -> float:
    """When the oldest unpublished entry of a document happened (Unix time)."""
    times = [_entry_time(entry) for entry in doc.get(OUTBOX_FIELD) or []]
    since = doc.get(OUTBOX_SINCE_FIELD)
    if isinstance(since, datetime):
        times.append(since.timestamp())
    return min(times, default=time.time())


def _entry_time(entry: Document) -> float:
    try:
        return entry_event(entry).time.timestamp()
    except (KeyError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return time.time()
