"""Dead letters: read what the consumers parked in `<topic>.dlq`, then replay or discard it.

`lintas_shared.consumer` parks a record it cannot process in the dead-letter topic of its
source topic, unchanged (key, value, CloudEvents `ce_*` headers) plus `lintas_dlq_*`
headers saying why, where it came from and which consumer gave up.

Kafka topics are append-only, so what an operator did with an entry lives in a small
ledger: a MongoDB collection with one document per handled entry, `_id` =
"<dlq topic>:<partition>:<offset>" (the entry's id everywhere in this module and in the
`lintas dlq` command). The ledger's unique `_id` is what makes replay safe:

- `replay` first *claims* the entry (an insert, which only one caller can win), then
  produces the record back to its source topic, then marks it `replayed`. A second replay
  finds the entry claimed and does nothing. A replay interrupted between the claim and
  the mark is left `replaying` and is finished by the next replay; the record may then
  reach the source topic twice, which the consumers absorb (they are idempotent by
  CloudEvents `(source, id)`).
- `discard` inserts a `discarded` entry with who and why; it refuses an entry whose
  replay was interrupted, because that record may already be back in the source topic.

A source record that several consumer groups parked (every consumer of a topic parks a
malformed record) is in the DLQ once per consumer, but one replay reaches every group
again: replaying one of them marks the others `replayed` too, with the one that went.

A record too large to park whole was parked as its first 64 KiB, with its original size
in `lintas_dlq_original_size`. Such an entry is never replayed: it would send a cut
record to the source topic. It stays pending until an operator discards it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lintas_shared.consumer import (
    DLQ_CONSUMER,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_SIZE,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
)
from lintas_shared.envelope import CloudEvent, MalformedEventError, from_kafka_record
from lintas_shared.kafka import MAX_RECORD_BYTES
from lintas_shared.kafka_auth import client_auth
from lintas_shared.mongo import Document
from lintas_shared.topics import DLQ_SUFFIX
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

#: Every header the consumer adds when it parks a record starts with this.
DLQ_HEADER_PREFIX: Final = "lintas_dlq_"
#: How long reading a topic to its end may take before we give up.
READ_TIMEOUT_SECONDS: Final = 60.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class DeadLetterError(RuntimeError):
    """An entry that cannot be found or acted upon, with a message for the operator."""


class EntryState(StrEnum):
    """Where a dead letter stands."""

    PENDING = "pending"  # nobody has acted on it
    REPLAYING = "replaying"  # a replay was claimed and not confirmed (interrupted?)
    REPLAYED = "replayed"
    DISCARDED = "discarded"


HANDLED: Final = frozenset({EntryState.REPLAYED, EntryState.DISCARDED})


def dead_letter_topic_of(name: str) -> str:
    """The DLQ topic for `name`, which may be a DLQ topic or its source topic."""
    return name if name.endswith(DLQ_SUFFIX) else f"{name}{DLQ_SUFFIX}"


def entry_id(topic: str, partition: int, offset: int) -> str:
    """The id of the record at `offset` of `topic`'s `partition`."""
    return f"{topic}:{partition}:{offset}"


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Which entry an operator means: always a topic and offset, maybe a partition."""

    topic: str
    offset: int
    partition: int | None = None

    @classmethod
    def parse(cls, words: Sequence[str]) -> EntryRef:
        """`TOPIC:PARTITION:OFFSET` (as `list` prints it), or `TOPIC OFFSET`."""
        try:
            if len(words) == 1:
                topic, partition, offset = words[0].rsplit(":", 2)
                return cls(dead_letter_topic_of(topic), int(offset), int(partition))
            if len(words) == 2:
                return cls(dead_letter_topic_of(words[0]), int(words[1]))
        except ValueError:
            pass
        raise DeadLetterError(
            f"not an entry: {' '.join(words)!r} (use TOPIC:PARTITION:OFFSET or TOPIC OFFSET)"
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, as it is on the wire."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        """`<dlq topic>:<partition>:<offset>`: the ledger's `_id` and the CLI's handle."""
        return entry_id(self.topic, self.partition, self.offset)

    def header(self, name: str) -> str | None:
        """The last value of a header, decoded (undecodable bytes replaced)."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value.decode("utf-8", errors="replace")
        return found

    @property
    def reason(self) -> str:
        """Why the consumer parked it."""
        return self.header(DLQ_REASON) or ""

    @property
    def consumer(self) -> str | None:
        """The consumer that parked it."""
        return self.header(DLQ_CONSUMER)

    @property
    def failed_at(self) -> str | None:
        """When it was parked (ISO 8601, as the consumer wrote it)."""
        return self.header(DLQ_FAILED_AT)

    @property
    def source_topic(self) -> str | None:
        """The topic the record was consumed from, where a replay sends it."""
        return self.header(DLQ_SOURCE_TOPIC)

    @property
    def source_id(self) -> str | None:
        """`<source topic>:<partition>:<offset>` of the original record, if recorded."""
        topic = self.source_topic
        partition = self.header(DLQ_SOURCE_PARTITION)
        offset = self.header(DLQ_SOURCE_OFFSET)
        if not (topic and partition and offset):
            return None
        return f"{topic}:{partition}:{offset}"

    @property
    def original_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The headers the record had before it was parked (byte for byte)."""
        return tuple((k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX))

    @property
    def event_type(self) -> str | None:
        """The CloudEvents type, if the record carries one."""
        return self.header("ce_type")

    @property
    def event_id(self) -> str | None:
        """The CloudEvents id, if the record carries one."""
        return self.header("ce_id")

    @property
    def payload_size(self) -> int:
        """The record value's size in bytes (of what was parked)."""
        return len(self.value or b"")

    @property
    def truncated(self) -> bool:
        """Whether the consumer parked only the first part of the value (too large)."""
        return self.header(DLQ_ORIGINAL_SIZE) is not None

    @property
    def original_size(self) -> int | None:
        """The value's size before it was truncated, in bytes (None if not truncated, or
        if the header is not a size)."""
        raw = self.header(DLQ_ORIGINAL_SIZE)
        try:
            size = int(raw or "")
        except ValueError:
            return None
        return size if size >= 0 else None

    def describe_truncation(self) -> str:
        """What a truncated entry kept: `the first 65536 of its 2000000 bytes`."""
        size = self.original_size
        if size is None:
            return f"the first {self.payload_size} bytes (its size was not recorded)"
        return f"the first {self.payload_size} of its {size} bytes"

    def parse(self) -> CloudEvent | MalformedEventError:
        """The event, or why the record is not a valid CloudEvent."""
        headers = {k: v.decode("utf-8", errors="replace") for k, v in self.original_headers}
        try:
            return from_kafka_record(self.value, headers)
        except MalformedEventError as exc:
            return exc


class DeadLetterSource(Protocol):
    """Reads dead-letter topics (Kafka, in production)."""

    async def dlq_topics(self) -> list[str]:
        """Every dead-letter topic there is, sorted."""
        ...

    async def topic_exists(self, topic: str) -> bool:
        """Whether `topic` exists."""
        ...

    async def read(self, topic: str) -> list[DeadLetter]:
        """Every record of `topic`, by partition and offset."""
        ...

    async def fetch(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """The record at `offset` of `partition`, or None if there is none."""
        ...

    async def partitions(self, topic: str) -> list[int]:
        """The partitions of `topic`."""
        ...


class RecordProducer(Protocol):
    """Produces a record as it is, returning where it landed."""

    async def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> tuple[int, int]:
        """Produce and wait for the broker; returns (partition, offset)."""
        ...


class KafkaDeadLetters:
    """Reads dead-letter topics from Kafka without a consumer group (commits nothing) and
    produces replays with an idempotent producer that waits for all in-sync replicas."""

    def __init__(self, bootstrap: str) -> None:
        # Room for the largest record the services produce, plus its headers.
        fetch_bytes = 2 * MAX_RECORD_BYTES
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            **client_auth().client_options(),
            client_id="lintas-dlq",
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=fetch_bytes,
        )
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, **client_auth().client_options(), client_id="lintas-dlq"
        )
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None  # built on first use: list never needs it

    async def start(self) -> None:
        """Connect the reader (the producer connects on first use)."""
        await self._admin.start()
        try:
            await self._consumer.start()
        except BaseException:
            await self._admin.close()
            raise

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()
        await self._admin.close()
        if self._producer is not None:
            await self._producer.stop()

    async def _all_topics(self) -> set[str]:
        return set(await self._admin.list_topics())

    async def dlq_topics(self) -> list[str]:
        """Every topic whose name ends in `.dlq`, sorted."""
        return sorted(t for t in await self._all_topics() if t.endswith(DLQ_SUFFIX))

    async def topic_exists(self, topic: str) -> bool:
        """Whether `topic` exists on the broker."""
        return topic in await self._all_topics()

    async def partitions(self, topic: str) -> list[int]:
        """The partitions of `topic`; DeadLetterError if there is no such topic."""
        if topic not in await self._all_topics():
            raise DeadLetterError(f"no topic {topic}")
        # The admin client asks the broker; the consumer's own metadata knows only the
        # topics it has been assigned so far.
        [described] = await self._admin.describe_topics([topic])
        return sorted(int(p["partition"]) for p in described["partitions"])

    async def read(self, topic: str) -> list[DeadLetter]:
        """Every record of `topic` up to its end at the time of the call."""
        assigned = [TopicPartition(topic, p) for p in await self.partitions(topic)]
        self._consumer.assign(assigned)
        ends = await self._consumer.end_offsets(assigned)
        begins = await self._consumer.beginning_offsets(assigned)
        waiting = {tp for tp in assigned if ends[tp] > begins[tp]}
        for tp in assigned:
            self._consumer.seek(tp, begins[tp])
        found: list[DeadLetter] = []
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            while waiting:
                batches = await self._consumer.getmany(*waiting, timeout_ms=500)
                for tp, records in batches.items():
                    found.extend(_letter(r) for r in records if r.offset < ends[tp])
                for tp in list(waiting):
                    if await self._consumer.position(tp) >= ends[tp]:
                        waiting.discard(tp)
        return sorted(found, key=lambda d: (d.partition, d.offset))

    async def fetch(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """The record at `offset`, or None if it is not (or no longer) in the topic."""
        if partition not in await self.partitions(topic):
            return None
        tp = TopicPartition(topic, partition)
        self._consumer.assign([tp])
        begin = (await self._consumer.beginning_offsets([tp]))[tp]
        end = (await self._consumer.end_offsets([tp]))[tp]
        if not begin <= offset < end:
            return None
        self._consumer.seek(tp, offset)
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            while True:
                batches = await self._consumer.getmany(tp, timeout_ms=500, max_records=1)
                for record in batches.get(tp, ()):
                    # Gone by retention: the first record after it comes instead.
                    return _letter(record) if record.offset == offset else None

    async def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> tuple[int, int]:
        """Produce one record as it is; returns (partition, offset) once acknowledged."""
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                **client_auth().client_options(),
                client_id="lintas-dlq",
                acks="all",
                enable_idempotence=True,
                max_request_size=MAX_RECORD_BYTES + 64_000,
            )
            await producer.start()
            self._producer = producer
        sent = await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        return int(sent.partition), int(sent.offset)


def _letter(record: Any) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple((k, bytes(v or b"")) for k, v in record.headers),
    )


class Ledger:
    """What was done with each dead letter: one document per handled entry.

    Every write and every single look-up is by `_id` (the only index FerretDB v1 uses);
    `states` scans, which is fine because only entries an operator acted on are here.
    """

    def __init__(self, collection: AsyncCollection[Document], clock: Clock = utc_now) -> None:
        self._collection = collection
        self._clock = clock

    async def states(self, topics: Iterable[str]) -> dict[str, Document]:
        """The ledger documents of entries in `topics`, by entry id."""
        cursor = self._collection.find({"dlq_topic": {"$in": list(topics)}})
        return {doc["_id"]: doc async for doc in cursor}

    async def get(self, letter: DeadLetter) -> Document | None:
        """The ledger document of one entry, if it was handled (or a replay claimed)."""
        return await self._collection.find_one({"_id": letter.id})

    def _document(self, letter: DeadLetter, state: EntryState, by: str) -> Document:
        return {
            "_id": letter.id,
            "dlq_topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "source": letter.source_id,
            "event_id": letter.event_id,
            "event_type": letter.event_type,
            "state": state.value,
            "by": by,
            "at": self._clock(),
        }

    async def _insert(self, doc: Document) -> Document | None:
        """Insert; None if it went in, else the document that was there first."""
        for _ in range(3):
            try:
                await self._collection.insert_one(doc)
            except DuplicateKeyError:
                existing = await self._collection.find_one({"_id": doc["_id"]})
                if existing is not None:
                    return existing
                continue  # a claim released between the two calls: try again
            return None
        raise DeadLetterError(f"{doc['_id']} keeps changing in the ledger; try again")

    async def claim_replay(self, letter: DeadLetter, by: str) -> Document | None:
        """Claim the entry for a replay; None if claimed now, else its existing document."""
        return await self._insert(self._document(letter, EntryState.REPLAYING, by))

    async def release(self, letter: DeadLetter) -> None:
        """Give up a claim whose replay failed before anything was produced."""
        await self._collection.delete_one({"_id": letter.id, "state": EntryState.REPLAYING})

    async def replayed(self, letter: DeadLetter, by: str, to: str) -> None:
        """Confirm a claimed replay: the record is back in its source topic at `to`."""
        await self._collection.update_one(
            {"_id": letter.id},
            {"$set": {"state": EntryState.REPLAYED.value, "by": by, "at": self._clock(), "to": to}},
        )

    async def replayed_with(self, letter: DeadLetter, other: DeadLetter, by: str) -> bool:
        """Record that replaying `other` (the same source record) replayed `letter` too."""
        doc = self._document(letter, EntryState.REPLAYED, by)
        doc["with"] = other.id
        return await self._insert(doc) is None

    async def discard(self, letter: DeadLetter, by: str, reason: str) -> Document | None:
        """Record a discard; None if recorded now, else the entry's existing document."""
        doc = self._document(letter, EntryState.DISCARDED, by)
        doc["reason"] = reason
        return await self._insert(doc)


@dataclass(frozen=True, slots=True)
class Entry:
    """A dead letter and what the ledger says about it."""

    letter: DeadLetter
    record: Document | None = None

    @property
    def state(self) -> EntryState:
        """Pending unless the ledger knows it."""
        return EntryState(self.record["state"]) if self.record else EntryState.PENDING


class Action(StrEnum):
    """What a replay or discard did with one entry."""

    REPLAYED = "replayed"
    DISCARDED = "discarded"
    SKIPPED = "skipped"  # nothing was done: see `SkipReason`
    FAILED = "failed"


class SkipReason(StrEnum):
    """Why a replay or discard did nothing with an entry."""

    HANDLED = "already handled"
    TRUNCATED = "truncated"  # a replay would send a cut record


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result for one entry of a replay or discard."""

    id: str
    action: Action
    detail: str
    to: str | None = None
    covers: tuple[str, ...] = field(default=())
    skipped: SkipReason | None = None


def describe_handled(record: Document) -> str:
    """`replayed by ops at …` in words, for an entry someone already handled."""
    at = record.get("at")
    when = at.isoformat(timespec="seconds") if isinstance(at, datetime) else str(at)
    words = f"{record['state']} by {record.get('by')} at {when}"
    if record.get("with"):
        words += f" with {record['with']} (the same source record)"
    if record.get("to"):
        words += f" to {record['to']}"
    return words


def _already_handled(letter: DeadLetter, record: Document) -> Outcome:
    return Outcome(
        letter.id,
        Action.SKIPPED,
        f"already {describe_handled(record)}",
        skipped=SkipReason.HANDLED,
    )


def _same_source(other: Entry, letter: DeadLetter) -> bool:
    """Another pending entry parked from the same source record as `letter`."""
    return (
        other.state is EntryState.PENDING
        and other.letter.id != letter.id
        and other.letter.source_id is not None
        and other.letter.source_id == letter.source_id
    )


class DeadLetterOperations:
    """List, show, replay and discard dead letters."""

    def __init__(
        self, source: DeadLetterSource, producer: RecordProducer, ledger: Ledger, operator: str
    ) -> None:
        self._source = source
        self._producer = producer
        self._ledger = ledger
        self._operator = operator

    async def topics(self, requested: Sequence[str] = ()) -> list[str]:
        """The DLQ topics meant: those named (source or DLQ names), else all of them."""
        if not requested:
            return await self._source.dlq_topics()
        topics = list(dict.fromkeys(dead_letter_topic_of(t) for t in requested))
        for topic in topics:
            if not await self._source.topic_exists(topic):
                raise DeadLetterError(f"no topic {topic}")
        return topics

    async def entries(self, topics: Sequence[str]) -> list[Entry]:
        """Every entry of `topics` with its state, in topic, partition and offset order."""
        records = await self._ledger.states(topics)
        found: list[Entry] = []
        for topic in topics:
            found.extend(Entry(d, records.get(d.id)) for d in await self._source.read(topic))
        return found

    async def find(self, ref: EntryRef) -> Entry:
        """The entry an operator named; DeadLetterError if none or several match."""
        partitions = (
            [ref.partition]
            if ref.partition is not None
            else await self._source.partitions(ref.topic)
        )
        found = [
            letter
            for p in partitions
            if (letter := await self._source.fetch(ref.topic, p, ref.offset)) is not None
        ]
        if not found:
            where = ref.topic if ref.partition is None else f"{ref.topic}:{ref.partition}"
            raise DeadLetterError(f"no dead letter at offset {ref.offset} of {where}")
        if len(found) > 1:
            ids = ", ".join(d.id for d in found)
            raise DeadLetterError(f"offset {ref.offset} is in several partitions: {ids}")
        return Entry(found[0], await self._ledger.get(found[0]))

    async def replay(
        self, targets: Sequence[Entry], topic_entries: Sequence[Entry]
    ) -> list[Outcome]:
        """Produce each target back to its source topic, once, and mark it replayed.

        `topic_entries` are all the entries of the targets' topics: an entry parked from
        the same source record as a replayed one is marked replayed with it.
        """
        outcomes: list[Outcome] = []
        for target in targets:
            outcomes.append(await self._replay_one(target, topic_entries))
        return outcomes

    async def _replay_one(self, target: Entry, topic_entries: Sequence[Entry]) -> Outcome:
        letter = target.letter
        source = letter.source_topic
        if letter.truncated:
            # Never claimed: the entry stays pending, for a discard.
            if target.record is not None and target.state in HANDLED:
                return _already_handled(letter, target.record)
            return refuse_truncated(letter)
        if not source:
            return Outcome(letter.id, Action.FAILED, f"no {DLQ_SOURCE_TOPIC} header")
        existing = await self._ledger.claim_replay(letter, self._operator)
        resumed = False
        if existing is not None:
            if EntryState(existing["state"]) in HANDLED:
                return _already_handled(letter, existing)
            resumed = True  # claimed before and never confirmed: finish that replay
        try:
            if not await self._source.topic_exists(source):
                raise DeadLetterError(f"source topic {source} does not exist")
            partition, offset = await self._producer.produce(
                source, letter.key, letter.value, letter.original_headers
            )
        except Exception as exc:
            if not resumed:
                await self._ledger.release(letter)
            return Outcome(letter.id, Action.FAILED, f"{type(exc).__name__}: {exc}")
        to = entry_id(source, partition, offset)
        await self._ledger.replayed(letter, self._operator, to)
        covers = [
            other.letter.id
            for other in topic_entries
            if _same_source(other, letter)
            and await self._ledger.replayed_with(other.letter, letter, self._operator)
        ]
        detail = "resumed an interrupted replay" if resumed else "replayed"
        return Outcome(letter.id, Action.REPLAYED, detail, to=to, covers=tuple(covers))

    async def discard(self, targets: Sequence[Entry], reason: str) -> list[Outcome]:
        """Mark each target handled without replaying it, with who and why."""
        if not reason.strip():
            raise DeadLetterError("a discard needs a reason")
        outcomes: list[Outcome] = []
        for target in targets:
            letter = target.letter
            existing = await self._ledger.discard(letter, self._operator, reason.strip())
            if existing is None:
                outcomes.append(Outcome(letter.id, Action.DISCARDED, "discarded"))
            elif EntryState(existing["state"]) is EntryState.REPLAYING:
                outcomes.append(
                    Outcome(
                        letter.id,
                        Action.FAILED,
                        "a replay of it was interrupted and may have reached the source topic: "
                        f"finish it with `lintas dlq replay {letter.id}`",
                    )
                )
            else:
                outcomes.append(_already_handled(letter, existing))
        return outcomes


def refuse_truncated(letter: DeadLetter) -> Outcome:
    """The outcome of replaying a truncated entry: nothing is sent, the entry stays."""
    return Outcome(
        letter.id,
        Action.SKIPPED,
        f"not replayed: it was truncated when parked ({letter.describe_truncation()} "
        f"kept) and a replay would send that cut record to "
        f"{letter.source_topic or 'its source topic'}; have the original sent again by "
        "its producer, then discard this entry"
        + (f" (the whole record was at {letter.source_id})" if letter.source_id else ""),
        skipped=SkipReason.TRUNCATED,
    )
