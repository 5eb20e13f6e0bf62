"""The transactional outbox: a state change and its events in one document write.

A service never publishes to Kafka in the same breath as it writes MongoDB (that is a
dual write: one can succeed while the other fails). Instead the events ride inside the
changed document, in its `outbox` array, written by the same single-document update. A
relay then publishes each entry (idempotent producer, acks=all) and only afterwards
pulls it from the array. A crash between the two publishes the entry again on restart;
consumers are idempotent on (ce_source, ce_id), so that duplicate changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Set
from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection

from lintas_shared.background import BackgroundTask
from lintas_shared.case_locks import CaseLocks
from lintas_shared.envelope import CloudEvent
from lintas_shared.logging import get_logger
from lintas_shared.metrics import OUTBOX, OUTBOX_RELAY_FAILURES
from lintas_shared.mongo import Document
from lintas_shared.tracing import producer_span

log = get_logger(__name__)

OUTBOX_FIELD = "outbox"
#: Documents with at least one unpublished entry (works on MongoDB 7 and FerretDB v1).
PENDING_FILTER: dict[str, Any] = {f"{OUTBOX_FIELD}.0": {"$exists": True}}


class EventPublisher(Protocol):
    """Where the relay sends events (Kafka in production, a list in unit tests)."""

    async def publish(self, topic: str, event: CloudEvent) -> None: ...


def outbox_entry(topic: str, event: CloudEvent) -> Document:
    """One outbox entry, as stored inside the changed document."""
    return {"id": event.id, "topic": topic, "event": event.model_dump(mode="json")}


def push_to_outbox(*entries: Document) -> Document:
    """The update fragment that appends entries to a document's outbox."""
    return {"$push": {OUTBOX_FIELD: {"$each": list(entries)}}}


class OutboxRelay:
    """Publishes the outbox entries of one collection.

    A writer calls `wake(doc_id)` after a write and the relay publishes that document's
    entries at once, reading it by `_id`. A sweep of the collection (at start, then every
    `sweep_interval` seconds) finds entries left behind by a crash or an outage. FerretDB
    cannot use an index for it and reads every document (20 s for 20,000 cases under
    load), so:
    - the sweep runs in its own task and only hands what it finds to the publishing loop,
      which never waits for a sweep;
    - the next sweep waits at least twenty times as long as the last one took;
    - a sweep is repeated at once only if it filled its batch and met a document this
      relay was not told about (left behind). Known documents are published anyway:
      counting them as "more to do" once kept sweeps running back to back under load,
      and a bulk import fell from 40 to 20 rows/s by 22,000 cases.
    A frequent sweep also kept a read open so often that SQLite could not checkpoint its
    log. This process's own failures to publish are retried from memory (see
    `relay_once`).

    For the same reason the backlog metrics are the relay's own view, kept in memory:
    the documents writers named and sweeps found, until their entries are published.
    """

    def __init__(
        self,
        collection: AsyncCollection[Document],
        publisher: EventPublisher,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        sweep_interval: float = 300.0,
        concurrency: int = 1,
        locks: CaseLocks | None = None,
    ) -> None:
        self._collection = collection
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._sweep_interval = sweep_interval
        # Documents published at once. Each document's own entries always go in order,
        # so more than one is safe only where a document holds all of a key's events
        # (a case's document in intake and referral).
        self._concurrency = concurrency
        #: The last sweep filled its batch with entries left behind: sweep again at once.
        #: (Known and fresh entries do not count: see the class docstring.)
        self.more_left_behind = False
        # FerretDB v1 applies an update as read-modify-write: the relay's $pull and a
        # service's write to the same document must not interleave, or one of them is
        # lost (a pulled entry comes back, or a pushed event disappears). Services pass
        # the per-document locks they hold around their own writes.
        self._locks = locks or CaseLocks()
        self._sweep_now = asyncio.Event()
        self._named_during_sweep: set[object] | None = None
        self._pending_ids: set[object] = set()
        # Documents known to hold unpublished entries -> Unix time of the oldest one.
        self._unpublished: dict[object, float] = {}
        self._wake = asyncio.Event()
        self._loop = BackgroundTask("outbox-relay", self._run)
        self._sweeper = BackgroundTask("outbox-sweep", self._sweep_forever)
        self._lock = asyncio.Lock()
        self.published = 0

    def wake(self, doc_id: object | None = None) -> None:
        """Ask the relay to publish now: this document's entries, or (no id) a full sweep."""
        if doc_id is None:
            self._sweep_now.set()
        else:
            self._pending_ids.add(doc_id)
            self._unpublished.setdefault(doc_id, time.time())
            if self._named_during_sweep is not None:
                self._named_during_sweep.add(doc_id)
        self._wake.set()

    @property
    def collection_name(self) -> str:
        """The collection whose outbox this relay publishes."""
        return self._collection.name

    def pending(self) -> tuple[int, float | None]:
        """Documents known to hold unpublished entries, and the oldest entry's Unix time.

        No store query: see the class docstring. Entries no writer announced are known
        from the next sweep on.
        """
        return len(self._unpublished), min(self._unpublished.values(), default=None)

    async def backlog(self) -> int:
        """How many documents still have unpublished entries (a collection scan on
        FerretDB: for tests and tools, never for metrics)."""
        return await self._collection.count_documents(PENDING_FILTER)

    async def relay_once(self, *, sweep: bool = True) -> int:
        """Publish the entries of the documents named by `wake`, and with `sweep` of every
        document with pending entries; returns how many entries were published."""
        async with self._lock:  # the loop and a final flush must not interleave
            count = 0
            ids, self._pending_ids = self._pending_ids, set()
            try:
                count += await self._publish_each(list(ids))
                if sweep:
                    found = await self._find_pending(known=ids)
                    count += await self._publish_each([doc["_id"] for doc in found])
            except BaseException:
                self._pending_ids |= ids  # nothing named is forgotten on failure
                raise
            self.published += count
            return count

    async def _find_pending(self, known: Set[object] = frozenset()) -> list[Document]:
        """One sweep: up to a batch of documents with unpublished entries (a read of the
        whole collection on FerretDB). Sets `more_left_behind`."""
        # A sweep can take long (20 s on 20,000 cases under load): documents this process
        # named or published meanwhile are known too, so they are collected as it runs.
        self._named_during_sweep = set()
        try:
            cursor = self._collection.find(PENDING_FILTER, {OUTBOX_FIELD: 1}).limit(
                self._batch_size
            )
            found = [doc async for doc in cursor]
            known = known | self._pending_ids | self._unpublished.keys() | self._named_during_sweep
        finally:
            self._named_during_sweep = None
        self.more_left_behind = len(found) >= self._batch_size and any(
            doc["_id"] not in known for doc in found
        )
        # Known before publishing, so an outage shows in the backlog metrics.
        for doc in found:
            self._note_unpublished(doc)
        return found

    async def _published_or_timeout(self, doc_ids: set[object], limit: float) -> None:
        """Wait until the loop has published these documents (or `limit` seconds pass)."""
        deadline = asyncio.get_running_loop().time() + limit
        while doc_ids & (self._pending_ids | self._unpublished.keys()):
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(self._poll_interval)

    async def _publish_each(self, doc_ids: list[object]) -> int:
        """Publish these documents' entries, `concurrency` documents at a time (so the
        broker's acknowledgements and the store's writes overlap). A failure stops it
        after the documents in flight finish, and is raised."""
        count = 0
        for start in range(0, len(doc_ids), self._concurrency):
            chunk = doc_ids[start : start + self._concurrency]
            results = await asyncio.gather(
                *(self._publish(doc_id) for doc_id in chunk), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                count += result
        return count

    async def _publish(self, doc_id: object) -> int:
        if self._named_during_sweep is not None:
            self._named_during_sweep.add(doc_id)
        async with self._locks.hold(str(doc_id)):
            doc = await self._collection.find_one({"_id": doc_id}, {OUTBOX_FIELD: 1})
            entries = [] if doc is None else doc.get(OUTBOX_FIELD, [])
            if doc is not None:
                self._note_unpublished(doc)
            for entry in entries:
                event = CloudEvent.model_validate(entry["event"])
                # A child of the context the event was created in (the HTTP request or
                # the consumer that caused it), however much later this runs.
                with producer_span(entry["topic"], event.type, event.id, event.traceparent):
                    await self._publisher.publish(entry["topic"], event)
                # Pull the entry exactly as read: FerretDB v1's $pull matches whole
                # values only, not conditions on sub-document fields.
                await self._collection.update_one({"_id": doc_id}, {"$pull": {OUTBOX_FIELD: entry}})
            # Inside the lock: a writer's later entry (and its wake) comes after this.
            self._unpublished.pop(doc_id, None)
            return len(entries)

    def _note_unpublished(self, doc: Document) -> None:
        entries = doc.get(OUTBOX_FIELD) or []
        if not entries:
            self._unpublished.pop(doc["_id"], None)
            return
        oldest = _oldest_entry_time(doc)
        known = self._unpublished.get(doc["_id"])
        self._unpublished[doc["_id"]] = oldest if known is None else min(known, oldest)

    async def _run(self) -> None:
        """The publishing loop: what writers named and sweeps found, never a sweep."""
        backoff = self._poll_interval
        while True:
            try:
                await self.relay_once(sweep=False)
                backoff = self._poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Broker or store unavailable: keep the entries and try again later.
                log.warning("outbox relay pass failed", error=type(exc).__name__)
                OUTBOX_RELAY_FAILURES.labels(self.collection_name).inc()
                backoff = min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()

    async def _sweep_forever(self) -> None:
        """Sweeps, handing what they find to the publishing loop."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                found = await self._find_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox sweep failed", error=type(exc).__name__)
                OUTBOX_RELAY_FAILURES.labels(self.collection_name).inc()
                found, self.more_left_behind = [], False
            took = loop.time() - began
            if found:
                handed = {doc["_id"] for doc in found}
                self._pending_ids |= handed
                self._wake.set()
                if self.more_left_behind:
                    # The next sweep must not meet this batch again (it would count as
                    # known, and the rest would wait for the next interval).
                    await self._published_or_timeout(handed, limit=60.0)
            # With more left behind, let the loop publish this batch first, so the next
            # sweep finds the rest; else, however large the collection grows, sweep at
            # most a twentieth of the time (or when asked: `wake()`).
            pause = (
                self._poll_interval
                if self.more_left_behind
                else max(self._sweep_interval, 20 * took)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sweep_now.wait(), timeout=pause)
            self._sweep_now.clear()

    def start(self) -> None:
        """Run the relay loop in the background."""
        if not self._loop.started:
            OUTBOX.track(self)
            self._loop.start()
            self._sweeper.start()

    async def stop(self, *, flush: bool = True) -> None:
        """Stop the loop; by default publish what is pending first (graceful shutdown)."""
        if self._sweeper.started:
            self._sweeper.cancel()
            await self._sweeper.stop()
        if self._loop.started:
            # Let a pass in flight finish: cancelling it between a publish and its pull
            # would publish that entry again at the next start.
            async with self._lock:
                self._loop.cancel()
            await self._loop.stop()
        if flush:
            try:
                await self.relay_once()
            except Exception as exc:
                log.warning("outbox flush at shutdown failed", error=type(exc).__name__)
        OUTBOX.untrack(self)


def _oldest_entry_time(doc: Document) -> float:
    """When the oldest unpublished entry of a document happened (Unix time)."""
    return min((_entry_time(entry) for entry in doc.get(OUTBOX_FIELD) or []), default=time.time())


def _entry_time(entry: Document) -> float:
    """When an outbox entry's event happened (Unix time); now if it cannot be read."""
    try:
        return datetime.fromisoformat(str(entry["event"]["time"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()
