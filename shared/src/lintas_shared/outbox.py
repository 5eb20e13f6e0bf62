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
  command, each by a conditional update that empties an outbox that is exactly them.
  A change of the document that comes first (`UnitOfWork(published=relay)`) removes
  them in its own write instead (`published_front`, `removed_by_writer`).
- Entries a crashed instance never published are found by a range query on the indexed
  `outbox_since` (the time of a document's oldest unpublished entry), once they are older
  than `grace` seconds, so an instance never races a live writer's own relay for them.
- Memory stays flat however far behind the relay falls (a bulk import outruns it): past
  `keep_ids` documents waiting, a hand-over is not kept (nor is any later one, until the
  relay has caught up: first in, first out), and once what is kept has gone out the
  relay finds those documents again with the same range query, without the grace but
  only up to the last hand-over it did not keep (written by this process before it), a
  pass at a time.
- A document's entries are published in order, one document at a time; up to
  `concurrency` documents are published at once, so the broker's acknowledgements overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
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


#: How long published entries wait for their removal where no change of the document
#: usually follows (referral's routings, notify's messages): at a low rate, the entries
#: several documents published in that time go in one removal command, not one each; a
#: crash republishes at most that much (consumers ignore the duplicates).
SLOW_CLEAR_DELAY = 5.0


def outbox_entry(topic: str, event: CloudEvent) -> Document:
    """One outbox entry, as stored inside the changed document."""
    return Outgoing(topic, event).entry()


@dataclass
class _Waiting:
    """A document's entries known to wait: from a writer (with its version) or a search."""

    version: int | None
    entries: list[Document] | None  # None: read the document
    since: float


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
        keep_ids: int = 20_000,
        writers_remove: bool = False,
    ) -> None:
        """`writers_remove`: the documents' next change usually comes within
        `clear_delay` and removes what was published in its own write
        (`UnitOfWork(published=relay)`), so each document's entries wait `clear_delay`
        in full before the relay removes them itself (without it, what waits is removed
        together once the first has waited: one command for many documents)."""
        self._documents = documents
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._grace = grace
        self._search_interval = search_interval
        self._clear_delay = clear_delay
        self._writers_remove = writers_remove
        # Where each document waits in full, those due within this of each other go in
        # one removal command, not one command each.
        self._clear_slack = clear_delay / 4 if writers_remove else 0.0
        # Hand-overs whose entries are kept in memory, at most: beyond it (a bulk import
        # outrunning the relay) only the id is kept and the document is read when its
        # turn comes, so memory stays flat however far behind the relay falls.
        self._keep_entries = keep_entries
        # Documents kept waiting, at most (each ~250 bytes): a 100,000-row import left
        # 86,000 hand-overs waiting, 21 MiB of intake's growth. Beyond it, a hand-over is
        # counted (`_overflowed`) and its document found again in the store.
        self._keep_ids = max(keep_ids, keep_entries)
        self._overflowed = 0
        self._overflow_since: float | None = None  # the first hand-over not kept
        self._overflow_until: datetime | None = None  # the last one, by the store's clock
        self._overflow_epoch = 0  # bumped by each hand-over not kept
        self._waiting: dict[str, _Waiting] = {}
        # Published entries not removed yet, by document, in outbox order (the outbox's
        # front, as far as this relay knows); since when each document's wait (monotonic
        # time), and when the first of them is due for removal.
        self._clearing: dict[str, list[Document]] = {}
        self._noted: dict[str, float] = {}
        self._clear_due: float | None = None
        self._wake = asyncio.Event()
        self._search_now = asyncio.Event()
        self._loop = BackgroundTask("outbox-relay", self._run)
        self._searcher = BackgroundTask("outbox-search", self._search_forever)
        self._lock = asyncio.Lock()
        # Entries this relay published and removed: a later write's hand-over still lists
        # them when it read the document before they were removed (removal bumps no
        # version), and they must not go out twice.
        self._done: OrderedDict[str, None] = OrderedDict()
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
            if known is None and (
                self._overflow_since is not None or len(self._waiting) >= self._keep_ids
            ):
                # Once one is not kept, none is until the relay caught up: what the store
                # holds goes first, in its index's order.
                self._overflow(since)
            elif (
                known is None
                or version is None
                or known.version is None
                or version >= known.version
            ):
                # A later write's outbox holds every entry of an earlier one not yet published.
                held = entries
                if known is None and len(self._waiting) >= self._keep_entries:
                    held = None  # read when its turn comes
                self._waiting[doc_id] = _Waiting(
                    version, None if held is None else list(held), since
                )
        self._wake.set()

    def _overflow(self, since: float) -> None:
        """A hand-over not kept: its document is found again in the store (`_take_overflow`)."""
        self._overflowed += 1
        self._overflow_epoch += 1
        # The writer set the document's `outbox_since` before this (the same clock as
        # `MongoVersionedDocuments`'), so a search up to now finds it, and not what other
        # instances write later (their relays publish that themselves).
        self._overflow_until = datetime.now(UTC)
        if self._overflow_since is None:
            self._overflow_since = since

    def on_commit(self, doc_id: str, version: int, entries: list[Document]) -> None:
        """The unit of work's hook (`UnitOfWork(on_commit=relay.on_commit)`)."""
        self.wake(doc_id, version, entries)

    def published_front(self, doc_id: str, outbox: Sequence[Document]) -> int:
        """How many of `outbox`'s first entries this relay published and has not removed
        yet (`UnitOfWork(published=relay)`): a writer may remove them in its own write."""
        front = self._clearing.get(doc_id)
        if not front or len(front) > len(outbox):
            return 0
        if any(mine["id"] != read["id"] for mine, read in zip(front, outbox, strict=False)):
            return 0
        return len(front)

    def removed_by_writer(self, doc_id: str, ids: Sequence[str]) -> None:
        """A writer's change removed these published entries (the outbox's front as
        `published_front` gave it): they are no longer this relay's to remove. A removal
        already under way for them misses and finds the outbox emptied already."""
        front = self._clearing.get(doc_id)
        if front is None or [e["id"] for e in front[: len(ids)]] != list(ids):
            return
        if len(front) > len(ids):
            self._clearing[doc_id] = front[len(ids) :]
        else:
            self._drop_front(doc_id)

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

    @property
    def kept(self) -> int:
        """Documents this relay holds in memory as waiting (at most `keep_ids`)."""
        return len(self._waiting)

    def pending(self) -> tuple[int, float | None]:
        """Documents known to hold unpublished entries, and the oldest one's Unix time
        (with hand-overs not kept: about as many, and at most as old)."""
        sinces = [w.since for w in self._waiting.values()]
        if self._overflow_since is not None:
            sinces.append(self._overflow_since)
        return len(self._waiting) + self._overflowed, min(sinces, default=None)

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
            while True:
                if self._overflow_since is not None and len(self._waiting) < self._batch_size:
                    await self._take_overflow()
                if not self._waiting:
                    break
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
                    await self._clear()
            self.published += count
            if clear_now or len(self._clearing) >= self._batch_size:
                await self._clear()
            elif self._clear_is_due():
                await self._clear(waited_only=self._writers_remove)
            return count

    def _clear_is_due(self) -> bool:
        return self._clear_due is not None and time.monotonic() >= self._clear_due

    def _note_front(self, doc_id: str, front: list[Document], *, new: bool) -> None:
        """The document's published entries waiting for removal (none: forget it); with
        `new` entries among them, the wait starts again (their writer's next change
        removes them all)."""
        if not front:
            self._drop_front(doc_id)
            return
        self._clearing[doc_id] = front
        since = time.monotonic() if new else self._noted.get(doc_id, time.monotonic())
        self._noted[doc_id] = since
        if self._clear_due is None:
            self._clear_due = since + self._clear_delay + self._clear_slack

    def _drop_front(self, doc_id: str) -> None:
        self._clearing.pop(doc_id, None)
        self._noted.pop(doc_id, None)

    async def _clear(self, *, waited_only: bool = False) -> None:
        """Remove the published entries from their outboxes, in one command (with
        `waited_only`, only those that waited `clear_delay`); documents whose outbox was
        not exactly them are read again (their slow path ran)."""
        if waited_only:
            cutoff = time.monotonic() - self._clear_delay
            ids = [doc_id for doc_id, since in self._noted.items() if since <= cutoff]
        else:
            ids = list(self._clearing)
        clearing = {
            doc_id: self._clearing.pop(doc_id) for doc_id in ids if doc_id in self._clearing
        }
        for doc_id in ids:
            self._noted.pop(doc_id, None)
        sinces = self._noted.values()
        wait = self._clear_delay + self._clear_slack
        self._clear_due = min(sinces) + wait if sinces else None
        if not clearing:
            return
        try:
            missed = await self._documents.clear_published_many(clearing)
        except BaseException:
            for doc_id, entries in clearing.items():  # kept for the next pass, due now
                if doc_id not in self._clearing:
                    self._clearing[doc_id] = entries
                    self._noted[doc_id] = time.monotonic() - self._clear_delay
            self._clear_due = time.monotonic()
            raise
        for doc_id in missed:
            self._waiting.setdefault(doc_id, _Waiting(None, None, time.time()))

    async def _take_overflow(self) -> None:
        """Queue a pass's worth of the documents whose hand-overs were not kept: what
        went out is removed first, so the search finds only entries still to publish,
        up to the last hand-over not kept (older entries of other instances too, which
        they may be publishing: a copy, which consumers ignore). Done when a search finds
        fewer than it asked for and no hand-over was dropped since it began; the set it
        reads only shrinks meanwhile, so it ends."""
        epoch = self._overflow_epoch
        until = self._overflow_until or datetime.now(UTC)
        await self._clear()
        before = len(self._waiting)
        found = await self._search(older_than=until)
        self._overflowed = max(0, self._overflowed - (len(self._waiting) - before))
        if found < self._batch_size and epoch == self._overflow_epoch:
            self._overflowed = 0
            self._overflow_since = None
            self._overflow_until = None

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
            # Read again, not taken from a later hand-over: what went out before the
            # failure is then noted for removal with the rest of the outbox as stored.
            self._waiting[doc_id] = _Waiting(None, None, batch[doc_id].since)
        if errors:
            raise errors[0]
        return sum(r for r in results if isinstance(r, int))

    async def _publish(self, doc_id: str, waiting: _Waiting) -> int:
        """Publish a document's entries not published yet, in order, and note them for
        removal with the ones already waiting for it: the outbox's front, in order."""
        if waiting.entries is None:
            doc = await self._documents.read(doc_id)
            outbox = [] if doc is None else list(doc.get(OUTBOX_FIELD) or [])
            if doc is not None and not outbox and doc.get(OUTBOX_SINCE_FIELD) is not None:
                await self._documents.clear_published(doc_id, [])  # a stale time
            front: list[Document] = []  # read as stored: it is the outbox
        else:
            # A writer's hand-over: its outbox as read, so it may list entries removed
            # since (removal bumps no version); those are among the published ones.
            outbox = waiting.entries
        fresh = [e for e in outbox if e["id"] not in self._done]
        for entry in fresh:
            event = entry_event(entry)
            # A child of the context the event was created in (the HTTP request or the
            # consumer that caused it), however much later this runs.
            with producer_span(entry["topic"], event.type, event.id, event.traceparent):
                await self._publisher.publish(entry["topic"], event)
            self._remember_done([entry])
        if waiting.entries is None:
            front = outbox
        else:
            # Taken after the sends, not before: a writer may have removed some of them
            # meanwhile (`removed_by_writer`). Those the hand-over no longer lists were
            # gone before its write (a writer's or another relay's removal): not to remove.
            listed = {e["id"] for e in outbox}
            front = [e for e in self._clearing.get(doc_id, []) if e["id"] in listed]
            noted = {e["id"] for e in front}
            front = [*front, *(e for e in fresh if e["id"] not in noted)]
        self._note_front(doc_id, front, new=bool(fresh))
        return len(fresh)

    def _remember_done(self, entries: Sequence[Document], keep: int = 10_000) -> None:
        for entry in entries:
            self._done[entry["id"]] = None
        while len(self._done) > keep:
            self._done.popitem(last=False)

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
                timeout = backoff
                if self._clear_due is not None and backoff == self._poll_interval:
                    # (After a failure the back-off decides, a removal's included.)
                    timeout = min(timeout, max(0.0, self._clear_due - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
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

    async def stop(self, *, flush: bool = True) -> None:
        """Stop; by default publish what is pending first (graceful shutdown). What was
        published is removed from the outboxes either way."""
        if self._searcher.started:
            self._searcher.cancel()
            await self._searcher.stop()
        if self._loop.started:
            # Let a pass in flight finish: cancelling it between a publish and its removal
            # would publish that entry again at the next start.
            try:
                async with self._lock:
                    self._loop.cancel()
            finally:
                self._loop.cancel()  # also when this stop is itself cut short
            await self._loop.stop()
        try:
            if flush:
                # Only what this process's writers handed over (those it did not keep are
                # searched for up to the last of them): a search now would take other
                # instances' fresh entries too (they publish them themselves).
                await self.relay_once(search=False)
            else:
                # What went out is removed either way: left, it would go out again.
                async with self._lock:
                    await self._clear()
        except Exception as exc:
            log.warning("outbox flush at shutdown failed", error=type(exc).__name__)
        OUTBOX.untrack(self)


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
