"""Metrics and traces against the real broker and store: outbox backlog, lag, readiness."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.consumer import EventConsumer, FetchPolicy, RetryPolicy, subscribe
from lintas_shared.envelope import CloudEvent, from_kafka_record, new_event
from lintas_shared.events import CaseSubmitted
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.metrics import CONSUMER_LAG, render
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry
from lintas_shared.runtime import ServiceRuntime
from lintas_shared.tracing import CE_TRACEPARENT_HEADER, TRACEPARENT_HEADER
from lintas_shared.unit_of_work import OUTBOX_SINCE_FIELD, MongoVersionedDocuments
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.kafka import collect, eventually, produce_raw
from tests.support.kafka_topics import private_topic
from tests.support.servers import Servers
from tests.support.tracing import recording_spans

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CREATED = f"00-{TRACE_ID}-1111111111111111-01"


async def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric family in the rendered exposition, keyed by labels."""
    text = (await render()).decode()
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def gauge(name: str, **labels: str) -> float | None:
    return (await samples(name)).get(tuple(sorted(labels.items())))


class SwitchablePublisher:
    """Refuses while `down`, then publishes through a real broker."""

    def __init__(self, inner: KafkaEventPublisher) -> None:
        self.inner = inner
        self.down = True

    async def publish(self, topic: str, event: CloudEvent) -> None:
        if self.down:
            raise ConnectionError("broker down")
        await self.inner.publish(topic, event)


async def test_outbox_backlog_and_age_follow_the_relay_without_querying_per_scrape(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    name = f"outbox_{uuid.uuid4().hex[:8]}"
    collection = mongo[database_name][name]
    old = new_event(
        source="/t",
        type_=CaseSubmitted.TYPE,
        subject="case-left-behind",
        data={},
        now=datetime.now(UTC) - timedelta(minutes=10),
        traceparent=CREATED,
    )
    # Left by a crash: no writer will name it; the relay's first sweep finds it.
    await collection.insert_one(
        {
            "_id": "case-left-behind",
            OUTBOX_FIELD: [outbox_entry(topic, old)],
            OUTBOX_SINCE_FIELD: old.time,
        }
    )
    broker = make_broker(servers.kafka_bootstrap, client_id="test-backlog")
    await broker.connect()
    publisher = SwitchablePublisher(KafkaEventPublisher(broker))
    relay = OutboxRelay(MongoVersionedDocuments(collection), publisher, poll_interval=0.05)
    try:
        with recording_spans() as spans:
            relay.start()
            await eventually(lambda: gauge("lintas_outbox_backlog", collection=name), timeout=30)
            age = await gauge("lintas_outbox_oldest_age_seconds", collection=name)
            assert age is not None
            assert age >= 600  # the entry's own time, not when the relay noticed it
            failures = await gauge("lintas_outbox_relay_failures_total", collection=name)
            assert failures is not None
            assert failures >= 1

            # A writer's entry while the broker is still down: two documents behind.
            fresh = case_submitted("case-fresh")
            await collection.insert_one(
                {"_id": "case-fresh", OUTBOX_FIELD: [outbox_entry(topic, fresh)]}
            )
            relay.wake("case-fresh")
            await eventually(
                lambda: _equals(gauge("lintas_outbox_backlog", collection=name), 2), timeout=30
            )

            publisher.down = False
            relay.wake()
            await eventually(
                lambda: _equals(gauge("lintas_outbox_backlog", collection=name), 0), timeout=60
            )
            assert await gauge("lintas_outbox_oldest_age_seconds", collection=name) == 0
            sent = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    finally:
        await relay.stop(flush=False)
        await broker.stop()
    assert await collection.count_documents({OUTBOX_SINCE_FIELD: {"$exists": True}}) == 0
    # The published record carries the creation context and the relay's producer span.
    [record] = await collect(
        servers.kafka_bootstrap, topic, lambda r: r.key == b"case-left-behind", timeout=30
    )
    assert record.headers[CE_TRACEPARENT_HEADER] == CREATED
    # One span per attempt; the ones while the broker was down ended in error.
    attempts = [s for s in sent if s.attributes and s.attributes["messaging.message.id"] == old.id]
    assert {s.status.status_code for s in attempts[:-1]} == {StatusCode.ERROR}
    producer = attempts[-1]
    assert producer.status.status_code is not StatusCode.ERROR
    assert format_trace_id(producer.context.trace_id) == TRACE_ID
    assert record.headers[TRACEPARENT_HEADER] == (
        f"00-{TRACE_ID}-{format_span_id(producer.context.span_id)}-01"
    )
    assert from_kafka_record(record.value, record.headers).traceparent == CREATED


async def _equals(reading: object, expected: float) -> bool:
    assert asyncio.iscoroutine(reading)
    return bool(await reading == expected)


async def test_readiness_waits_for_assignment_and_lag_is_reported_per_partition(
    servers: Servers, mongo: AsyncMongoClient[Document]
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    group = f"g-lag-{uuid.uuid4().hex[:8]}"
    for n in range(5):
        await produce_raw(
            servers.kafka_bootstrap,
            topic,
            b"{}",
            key=b"case-lag",
            headers={
                "ce_id": f"lag-{n}",
                "ce_source": "/t",
                "ce_type": CaseSubmitted.TYPE,
                "ce_specversion": "1.0",
                "ce_time": datetime.now(UTC).isoformat(),
                "ce_subject": "case-lag",
            },
        )
    release = asyncio.Event()
    handled: list[str] = []

    async def handle(event: CloudEvent) -> None:
        handled.append(event.id)
        if len(handled) == 2:
            await release.wait()  # hold the second record: four are behind it

    broker = make_broker(servers.kafka_bootstrap, client_id="test-lag")
    consumer = EventConsumer(
        "lag-test", {CaseSubmitted.TYPE: handle}, KafkaEventPublisher(broker), RetryPolicy()
    )
    # Batches of one: a record counts as processed when its batch is acknowledged.
    subscribe(broker, topic, group_id=group, consumer=consumer, fetch=FetchPolicy(), batch_size=1)
    runtime = ServiceRuntime(
        name="lag-test",
        mongo=mongo,
        broker=broker,
        kafka_bootstrap=servers.kafka_bootstrap,
        topic_partitions=1,
    )
    assert await runtime.consumers_ready() is False  # not started: no consumer at all
    await broker.start()
    CONSUMER_LAG.track(broker)
    try:
        await eventually(runtime.consumers_ready, timeout=60)
        lag = {"group": group, "topic": topic, "partition": "0"}
        await eventually(lambda: _equals(gauge("lintas_consumer_lag", **lag), 4), timeout=60)
        assert await gauge("lintas_consumer_assigned_partitions", group=group) == 1
        release.set()
        await eventually(lambda: _equals(gauge("lintas_consumer_lag", **lag), 0), timeout=60)
        assert len(handled) == 5
    finally:
        release.set()
        CONSUMER_LAG.untrack(broker)
        await broker.stop()
    assert await runtime.consumers_ready() is False
