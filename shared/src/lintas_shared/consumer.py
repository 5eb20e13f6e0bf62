"""Reliable event consumption: parse, handle with bounded retries, park failures.

Every subscriber in Lintas goes through `EventConsumer.consume`:
- a record that is not a valid CloudEvent goes straight to `<topic>.dlq`;
- an event whose payload is invalid, or that a handler rejects as permanently
  impossible, goes to the DLQ with the reason;
- an unexpected error is retried a bounded number of times with backoff, then parked;
- when the store or broker is unreachable the error propagates after the retries, the
  subscriber's ack policy (NACK_ON_ERROR) seeks back, and the record is redelivered
  later: an outage must not empty a topic into its DLQ.
Only then is the offset committed, so a record is never acknowledged unhandled.

Each record of a handled type is processed in a consumer span, child of the trace
context in its headers, and counted by type and outcome (`lintas_shared.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, Topic
from faststream.message import StreamMessage
from opentelemetry.trace import Span, Tracer, use_span

from lintas_shared.backoff import Jitter, backoff_seconds
from lintas_shared.envelope import CloudEvent, MalformedEventError, from_kafka_record
from lintas_shared.events import EventPayloadError
from lintas_shared.logging import get_logger, log_context
from lintas_shared.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    EVENTS_CONSUMED,
    HANDLER_DURATION,
    MALFORMED_TYPE,
    OUTCOME_DLQ,
    OUTCOME_OK,
    OUTCOME_REDELIVERED,
    OUTCOME_RETRIED,
)
from lintas_shared.mongo import TRANSIENT_STORE_ERRORS
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import FETCH_WAIT_FACTOR, dead_letter_topic
from lintas_shared.tracing import consumer_span, mark_error, tracer

log = get_logger(__name__)

EventHandler = Callable[[CloudEvent], Awaitable[None]]
#: Handles a batch's events of one key (in offset order) together: see `EventConsumer`.
ChainHandler = Callable[[Sequence[CloudEvent]], Awaitable[None]]
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_STORE_ERRORS,
    KafkaError,
    OSError,
    TimeoutError,
)
#: Headers added to a dead letter; the original headers are kept as they were.
DLQ_REASON = "lintas_dlq_reason"
DLQ_SOURCE_TOPIC = "lintas_dlq_source_topic"
DLQ_SOURCE_PARTITION = "lintas_dlq_source_partition"
DLQ_SOURCE_OFFSET = "lintas_dlq_source_offset"
DLQ_CONSUMER = "lintas_dlq_consumer"
DLQ_FAILED_AT = "lintas_dlq_failed_at"
#: Set when the parked value is a truncated copy: the original record's size in bytes.
DLQ_ORIGINAL_SIZE = "lintas_dlq_original_size"

#: A value larger than this is parked as its first `DLQ_KEPT_BYTES` only: the producer
#: refuses records over about a megabyte, and a record that cannot be parked would be
#: redelivered for ever, blocking its partition.
DLQ_MAX_VALUE_BYTES = 900_000
DLQ_KEPT_BYTES = 64 * 1024


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never be processed (e.g. unknown case)."""


class RawPublisher(Protocol):
    """Publishes bytes as they are; used to park dead letters."""

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as received, before any parsing."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Lead:
    """Another consumer group of the same process whose records go first.

    A service reading one case's events from two topics, in two groups, handles an event
    that overtook its case's first one the long way (notify keeps it in the store until
    the case arrives: several writes more). When the first topic has a backlog (a bulk
    import), the second group runs ahead and nearly every case takes that way. With a
    lead, a batch of the following group waits while the lead group's members in this
    process have more than `records` records left to handle, `longest` seconds at most
    (well below Kafka's poll interval, past which a member loses its partitions). It only
    makes overtaking rarer: an event that still overtakes is handled as before.
    """

    group_id: str
    records: int = 200
    longest: float = 60.0
    poll: float = 0.25


async def wait_for_lead(
    lead: Lead,
    behind: Callable[[], int],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> float:
    """Wait while `behind()` (the lead group's records left) is above `lead.records`, at
    most `lead.longest` seconds; returns the seconds waited."""
    started = clock()
    while behind() > lead.records:
        waited = clock() - started
        if waited >= lead.longest:
            break
        await sleep(min(lead.poll, lead.longest - waited))
    return clock() - started


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing event is retried before it is parked."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    jitter: Jitter = random.random

    def delay(self, attempt: int) -> float:
        """Backoff before the next attempt (attempt counts from 1), with jitter."""
        return backoff_seconds(self.base_delay, attempt, self.max_delay, self.jitter)


class EventConsumer:
    """Dispatches events to handlers by CloudEvents type, with retries and a DLQ."""

    def __init__(
        self,
        name: str,
        handlers: Mapping[str, EventHandler],
        dead_letters: RawPublisher,
        retry: RetryPolicy | None = None,
        *,
        group: str = "",
        tracer_: Tracer | None = None,
        chain: ChainHandler | None = None,
        chain_types: Collection[str] = (),
    ) -> None:
        """With `chain`, a batch's events of one key whose types are all in
        `chain_types` go to it together, in offset order (one write for a document's
        several events, say); it must do what their handlers would, one after another.
        If it raises, the events go to their handlers one by one, as any others (with
        their retries and dead letters), so it must leave nothing half done."""
        self.name = name
        self._handlers = dict(handlers)
        self._chain = chain
        self._chain_types = frozenset(chain_types)
        # topic -> the types taken from it, when one consumer reads several topics
        # (`subscribe` to several): any other type there is passed over, as on one topic.
        self._topic_types: dict[str, frozenset[str]] = {}
        self._dead_letters = dead_letters
        self._retry = retry or RetryPolicy()
        #: The consumer group, for span attributes (set by `subscribe`).
        self.group = group
        # Injected by tests; otherwise the process's tracer, resolved at each use so a
        # provider installed after construction still applies.
        self._tracer = tracer_
        self.parked = 0

    @property
    def event_types(self) -> tuple[str, ...]:
        """The CloudEvents types this consumer handles; it ignores the rest."""
        return tuple(self._handlers)

    async def consume(self, record: RawRecord) -> None:
        """Process one record; returns when it may be acknowledged."""
        started = time.perf_counter()
        try:
            event = from_kafka_record(record.value, record.headers)
        except MalformedEventError as exc:
            with self._span(record) as span:
                mark_error(span, "malformed record")
                await self._park(record, f"malformed: {exc}", "malformed")
            EVENTS_CONSUMED.labels(self.name, record.topic, MALFORMED_TYPE, OUTCOME_DLQ).inc()
            return
        handler = self._handlers.get(event.type)
        if handler is None or not self._takes(record.topic, event.type):
            return  # another consumer's event on a shared topic
        outcome = OUTCOME_REDELIVERED
        with (
            log_context(case_id=event.subject, event_id=event.id, event_type=event.type),
            self._span(record) as span,
        ):
            span.set_attribute("messaging.message.id", event.id)
            span.set_attribute("cloudevents.event_type", event.type)
            span.set_attribute("cloudevents.event_subject", event.subject)
            try:
                outcome = await self._handle(record, event, handler, span)
            finally:
                self._handled(record, event, outcome, time.perf_counter() - started)

    async def consume_batch(self, records: Sequence[RawRecord], *, concurrency: int = 16) -> None:
        """Process a batch: each key's records in order, different keys side by side.
        Returns when the whole batch may be acknowledged; raises the first failure after
        every key's records have been tried."""
        by_key: dict[bytes | None, list[RawRecord]] = {}
        for record in records:
            by_key.setdefault(record.key, []).append(record)
        semaphore = asyncio.Semaphore(concurrency)

        async def in_order(chain: list[RawRecord]) -> None:
            async with semaphore:
                if len(chain) > 1 and self._chain is not None and await self._together(chain):
                    return
                for record in chain:
                    await self.consume(record)

        results = await asyncio.gather(
            *(in_order(c) for c in by_key.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def take_from(self, topic: str, event_types: Collection[str]) -> None:
        """Take only `event_types` from `topic` (one consumer reading several topics)."""
        self._topic_types[topic] = frozenset(event_types)

    def _takes(self, topic: str, event_type: str) -> bool:
        allowed = self._topic_types.get(topic)
        return allowed is None or event_type in allowed

    async def _together(self, chain: list[RawRecord]) -> bool:
        """Hand one key's records to the chain handler at once; False (nothing done) if
        they are not all of its types, or if it failed: each then goes on its own."""
        assert self._chain is not None
        started = time.perf_counter()
        handled: list[tuple[RawRecord, CloudEvent]] = []
        for record in chain:
            try:
                event = from_kafka_record(record.value, record.headers)
            except MalformedEventError:
                return False
            # Other types are another consumer's: passed over, as `consume` does.
            if event.type in self._handlers and self._takes(record.topic, event.type):
                if event.type not in self._chain_types:
                    return False
                handled.append((record, event))
        if len(handled) < 2:
            return False
        with contextlib.ExitStack() as scope:
            spans: list[Span] = []
            for record, event in handled:
                span = scope.enter_context(self._span(record))  # each in its own trace
                span.set_attribute("messaging.message.id", event.id)
                span.set_attribute("cloudevents.event_type", event.type)
                span.set_attribute("cloudevents.event_subject", event.subject)
                span.set_attribute("messaging.batch.message_count", len(handled))
                spans.append(span)
            try:
                await self._chain([event for _, event in handled])
            except Exception as exc:
                for span in spans:
                    mark_error(span, f"handled together: {type(exc).__name__}")
                log.warning(
                    "events handled together failed; handling them one by one",
                    consumer=self.name,
                    events=len(handled),
                    error=type(exc).__name__,
                )
                return False
            seconds = time.perf_counter() - started
            for (record, event), span in zip(handled, spans, strict=True):
                with (
                    use_span(span),  # the line carries its own record's trace
                    log_context(case_id=event.subject, event_id=event.id, event_type=event.type),
                ):
                    self._handled(record, event, OUTCOME_OK, seconds, together=len(handled))
        return True

    def _handled(
        self, record: RawRecord, event: CloudEvent, outcome: str, seconds: float, together: int = 1
    ) -> None:
        """Count a handled event and log its line (one per event: it ties the case and
        the event to the trace); events handled together share the time."""
        EVENTS_CONSUMED.labels(self.name, record.topic, event.type, outcome).inc()
        HANDLER_DURATION.labels(self.name, event.type).observe(seconds / together)
        extra = {"together": together} if together > 1 else {}
        log.info(
            "event handled",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            outcome=outcome,
            duration_ms=round(seconds * 1000, 1),
            **extra,
        )

    def _span(self, record: RawRecord) -> contextlib.AbstractContextManager[Span]:
        return consumer_span(
            self._tracer or tracer(),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            group=self.group,
            headers=record.headers,
        )

    async def _handle(
        self, record: RawRecord, event: CloudEvent, handler: EventHandler, span: Span
    ) -> str:
        """Run the handler with bounded retries; returns the outcome (see metrics)."""
        for attempt in range(1, self._retry.attempts + 1):
            try:
                await handler(event)
                return OUTCOME_OK if attempt == 1 else OUTCOME_RETRIED
            except (PermanentEventError, EventPayloadError) as exc:
                mark_error(span, "rejected")
                await self._park(record, f"rejected: {exc}", "rejected")
                return OUTCOME_DLQ
            except TRANSIENT_ERRORS as exc:
                if attempt == self._retry.attempts:
                    log.warning(
                        "store or broker unavailable; record will be redelivered",
                        error=type(exc).__name__,
                    )
                    raise
                await asyncio.sleep(self._retry.delay(attempt))
            except Exception as exc:
                if attempt == self._retry.attempts:
                    log.exception("handler failed; parking event", attempts=attempt)
                    mark_error(span, f"failed: {type(exc).__name__}")
                    await self._park(
                        record,
                        f"failed after {attempt} attempts: {type(exc).__name__}: {exc}",
                        "failed",
                    )
                    return OUTCOME_DLQ
                log.warning("handler failed; retrying", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(self._retry.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _park(self, record: RawRecord, reason: str, kind: str) -> None:
        headers = {
            **record.headers,
            DLQ_REASON: reason[:1000],
            DLQ_SOURCE_TOPIC: record.topic,
            DLQ_SOURCE_PARTITION: str(record.partition),
            DLQ_SOURCE_OFFSET: str(record.offset),
            DLQ_CONSUMER: self.name,
            DLQ_FAILED_AT: datetime.now(UTC).isoformat(),
        }
        value = record.value
        if value is not None and len(value) > DLQ_MAX_VALUE_BYTES:
            headers[DLQ_ORIGINAL_SIZE] = str(len(value))
            value = value[:DLQ_KEPT_BYTES]
        await self._dead_letters.publish_raw(
            dead_letter_topic(record.topic), record.key, value, headers
        )
        self.parked += 1
        DEAD_LETTERS.labels(self.name, record.topic, kind).inc()
        log.warning(
            "event parked in dead-letter topic",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason[:200],
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """One consumer attached to one topic: what the AsyncAPI documents say it receives."""

    consumer: str
    topic: str
    group_id: str
    event_types: tuple[str, ...]


_SUBSCRIPTIONS: weakref.WeakKeyDictionary[KafkaBroker, list[Subscription]] = (
    weakref.WeakKeyDictionary()
)


def subscriptions(broker: KafkaBroker) -> tuple[Subscription, ...]:
    """The subscriptions `subscribe` attached to `broker`, in order."""
    return tuple(_SUBSCRIPTIONS.get(broker, ()))


async def _kafka_records(message: StreamMessage[Any]) -> list[ConsumerRecord[Any, Any]]:
    """A batch's Kafka records as they came: parsing (and refusing) is EventConsumer's
    job. Handed to the handler as its decoded body, because a handler parameter typed as
    FastStream's message is looked up in its context by a worker thread, for every batch
    (a thread hand-off that cost about 5% of a consumer's CPU)."""
    raw = message.raw_message
    return list(raw) if isinstance(raw, tuple | list) else [raw]


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How long the broker may hold a consumer's fetch to gather records into a batch.

    A batch costs a consumer about the same whatever its size (the fetch and its answer,
    FastStream's dispatch, the offset commit). Answered at the first record, fetches at
    40 cases a second carried one record each: the three services spent 26 ms of CPU a
    case; letting the broker wait 100 ms (250 on referrals), 17 (`make bench`, README
    Performance). The broker answers when `min_bytes` are waiting or the wait is up,
    whichever comes first, so a busy topic is not slowed; a quiet one adds at most the
    wait to an event's way.
    """

    max_wait_ms: int = 100
    min_bytes: int = 65_536

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> FetchPolicy:
        """`LINTAS_KAFKA_FETCH_MAX_WAIT_MS` and `LINTAS_KAFKA_FETCH_MIN_BYTES`."""
        return cls(settings.kafka_fetch_max_wait_ms, settings.kafka_fetch_min_bytes)

    def max_wait_for(self, topic: str) -> int:
        """The wait for `topic`'s consumers (`FETCH_WAIT_FACTOR` times the base)."""
        return round(self.max_wait_ms * FETCH_WAIT_FACTOR.get(topic, 1.0))


def subscribe(
    broker: KafkaBroker,
    topics: str | Mapping[str, Sequence[str]],
    *,
    group_id: str,
    consumer: EventConsumer,
    fetch: FetchPolicy,
    batch_size: int = 100,
    concurrency: int = 16,
    after: Lead | None = None,
) -> None:
    """Attach `consumer` to `topics` in consumer group `group_id`, acknowledging
    explicitly: one topic, from which it takes all its event types, or several (topic ->
    the event types it takes from there, for the AsyncAPI documents). One subscriber
    reads them all, so a batch holds a key's records of every topic (a case's news from
    two services, say: `EventConsumer`'s `chain`).

    Records come in batches of up to `batch_size`, gathered by the broker as `fetch`
    allows (the longest wait of the topics'). A batch's records with the same key
    (the case id) are handled one after another, in offset order; different keys run side
    by side, `concurrency` at a time. Offsets are committed only after the whole batch is
    handled (NACK_ON_ERROR seeks back to its start when one raises: the records already
    handled come again and are dropped by their handlers' processed-event keys). A new
    group starts from the earliest record, so nothing published before the service first
    started is skipped. With `after`, each batch first waits for that lead group (`Lead`).
    """
    receives = {topics: consumer.event_types} if isinstance(topics, str) else topics
    consumer.group = consumer.group or group_id
    for topic, event_types in receives.items():
        _SUBSCRIPTIONS.setdefault(broker, []).append(
            Subscription(consumer.name, topic, group_id, tuple(event_types))
        )
        if len(receives) > 1:
            consumer.take_from(topic, event_types)
    names = list(receives)

    @broker.subscriber(
        # Not created here: the runtime's ensure_topics does, and a service's Kafka
        # principal may not create a topic it only reads.
        *(Topic(topic, declare=False) for topic in names),
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        decoder=_kafka_records,
        batch=True,
        max_records=batch_size,
        fetch_max_wait_ms=max(fetch.max_wait_for(topic) for topic in names),
        fetch_min_bytes=fetch.min_bytes,
        title=f"{consumer.name}:{','.join(names)}",
        description=f"Handles {', '.join(consumer.event_types)}",
    )
    # `Any`: FastStream would validate an annotated body; these are the decoder's records.
    async def on_records(records: Any) -> None:
        if after is not None:
            waited = await wait_for_lead(after, lambda: CONSUMER_LAG.behind(broker, after.group_id))
            if waited >= 1.0:
                log.info(
                    "batch waited for the lead group",
                    group=group_id,
                    lead=after.group_id,
                    seconds=round(waited, 1),
                )
        await consumer.consume_batch(
            [
                RawRecord(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value,
                    headers={name: value.decode() for name, value in r.headers},
                )
                for r in records
            ],
            concurrency=concurrency,
        )
        for r in records:
            CONSUMER_LAG.processed(group_id, r.topic, r.partition, r.offset)
