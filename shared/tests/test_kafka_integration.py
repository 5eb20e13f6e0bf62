"""Publishing and consuming on the real Kafka broker: headers, ack, redelivery, DLQ."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest
from faststream.kafka import KafkaBroker
from lintas_shared.consumer import (
    DLQ_REASON,
    EventConsumer,
    FetchPolicy,
    Lead,
    RetryPolicy,
    subscribe,
)
from lintas_shared.envelope import CloudEvent, from_kafka_record, to_kafka_record
from lintas_shared.events import CaseSubmitted
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.topics import dead_letter_topic

from tests.support.fixtures import case_submitted
from tests.support.kafka import collect, eventually, produce_raw
from tests.support.kafka_topics import private_topic
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


async def test_published_event_carries_cloudevents_binary_headers(servers: Servers) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    broker = make_broker(servers.kafka_bootstrap, client_id="test-publisher")
    await broker.connect()
    try:
        event = case_submitted(f"case-{uuid.uuid4()}")
        await KafkaEventPublisher(broker).publish(topic, event)
    finally:
        await broker.stop()

    [record] = await collect(servers.kafka_bootstrap, topic, lambda r: True)
    assert record.key == event.subject.encode()
    for header in ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject"):
        assert record.headers[header], header
    assert record.headers["ce_type"] == CaseSubmitted.TYPE
    assert record.headers["content-type"] == "application/json"
    assert from_kafka_record(record.value, record.headers) == event


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.handled: list[CloudEvent] = []
        self.fail_times = fail_times

    async def __call__(self, event: CloudEvent) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("store briefly unreachable")
        self.handled.append(event)


async def _run_consumer(
    servers: Servers,
    topic: str,
    group: str,
    recorder: Recorder,
    retry: RetryPolicy,
    fetch: FetchPolicy | None = None,
) -> tuple[KafkaBroker, EventConsumer]:
    broker = make_broker(servers.kafka_bootstrap, client_id=f"test-{group}")
    consumer = EventConsumer(
        "test", {CaseSubmitted.TYPE: recorder}, KafkaEventPublisher(broker), retry
    )
    subscribe(broker, topic, group_id=group, consumer=consumer, fetch=fetch or FetchPolicy())
    await broker.start()
    return broker, consumer


async def test_malformed_record_goes_to_dlq_and_the_next_good_one_is_processed(
    servers: Servers,
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    good = case_submitted("case-after-poison")
    # The poison shares the good event's key, hence its partition: it must not block it.
    await produce_raw(
        servers.kafka_bootstrap,
        topic,
        b"\x00 not json",
        key=good.subject.encode(),
        headers={"ce_id": "poison-1"},
    )
    await KafkaEventPublisherOnce(servers).publish(topic, good)

    recorder = Recorder()
    broker, _ = await _run_consumer(
        servers, topic, f"g-{uuid.uuid4()}", recorder, RetryPolicy(attempts=2, base_delay=0.05)
    )
    try:
        await eventually(lambda: recorder.handled, timeout=60)
    finally:
        await broker.stop()

    assert [e.id for e in recorder.handled] == [good.id]
    [parked] = await collect(servers.kafka_bootstrap, dead_letter_topic(topic), lambda r: True)
    assert parked.value == b"\x00 not json"
    assert parked.key == good.subject.encode()
    assert parked.headers[DLQ_REASON].startswith("malformed:")
    assert parked.headers["ce_id"] == "poison-1"


async def test_failed_record_is_redelivered_not_lost_and_offsets_commit_after_success(
    servers: Servers,
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    event = case_submitted(f"case-{uuid.uuid4()}")
    await KafkaEventPublisherOnce(servers).publish(topic, event)
    group = f"g-{uuid.uuid4()}"

    # Fails 3 times with one attempt each: NACK seeks back and Kafka redelivers it.
    recorder = Recorder(fail_times=3)
    broker, consumer = await _run_consumer(
        servers, topic, group, recorder, RetryPolicy(attempts=1, base_delay=0.0)
    )
    try:
        await eventually(lambda: recorder.handled, timeout=60)
        await asyncio.sleep(1.0)  # let the commit reach the broker
    finally:
        await broker.stop()
    assert [e.id for e in recorder.handled] == [event.id]
    assert consumer.parked == 0

    # A new member of the same group starts after the committed offset: no redelivery.
    again = Recorder()
    broker2, _ = await _run_consumer(servers, topic, group, again, RetryPolicy())
    try:
        await KafkaEventPublisherOnce(servers).publish(topic, case_submitted("case-marker"))
        await eventually(lambda: again.handled, timeout=60)
    finally:
        await broker2.stop()
    assert [e.subject for e in again.handled] == ["case-marker"]


class KafkaEventPublisherOnce:
    """Publish through a short-lived broker connection."""

    def __init__(self, servers: Servers) -> None:
        self._bootstrap = servers.kafka_bootstrap

    async def publish(self, topic: str, event: CloudEvent) -> None:
        broker = make_broker(self._bootstrap, client_id="test-once")
        await broker.connect()
        try:
            await KafkaEventPublisher(broker).publish(topic, event)
        finally:
            await broker.stop()


async def test_a_batch_reaches_its_consumer_without_a_worker_thread(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A handler parameter typed as FastStream's message is looked up in its context by a
    # worker thread for every batch (about 5% of a consumer's CPU); the records come as the
    # decoded body instead, all on the event loop.
    handed_off: list[object] = []
    to_thread = anyio.to_thread.run_sync

    async def spy(func: Callable[..., object], *args: object, **kwargs: Any) -> object:
        handed_off.append(func)
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    topic = await private_topic(servers.kafka_bootstrap)
    events = [case_submitted(f"case-{uuid.uuid4()}") for _ in range(3)]
    for event in events:
        await KafkaEventPublisherOnce(servers).publish(topic, event)
    recorder = Recorder()
    broker, _ = await _run_consumer(servers, topic, f"g-{uuid.uuid4()}", recorder, RetryPolicy())
    try:
        await eventually(lambda: len(recorder.handled) == len(events), timeout=60)
    finally:
        await broker.stop()
    assert sorted(e.id for e in recorder.handled) == sorted(e.id for e in events)
    assert handed_off == []


async def test_the_broker_gathers_a_batch_as_the_fetch_policy_says_and_answers_a_quiet_topic(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    consume_batch = EventConsumer.consume_batch

    async def spy(self: EventConsumer, records: Any, *, concurrency: int = 16) -> None:
        batches.append(len(records))
        await consume_batch(self, records, concurrency=concurrency)

    monkeypatch.setattr(EventConsumer, "consume_batch", spy)
    topic = await private_topic(servers.kafka_bootstrap)
    events = [case_submitted(f"case-{uuid.uuid4()}") for _ in range(4)]
    record = to_kafka_record(events[0])
    size = len(record.value) + sum(len(k) + len(v) for k, v in record.headers.items())
    # More than two records' bytes, fewer than three's: only the third may end a wait.
    policy = FetchPolicy(max_wait_ms=4_000, min_bytes=size * 5 // 2)
    recorder = Recorder()
    broker, _ = await _run_consumer(
        servers, topic, f"g-{uuid.uuid4()}", recorder, RetryPolicy(), policy
    )
    publisher = make_broker(servers.kafka_bootstrap, client_id="test-gathered")
    await publisher.connect()
    try:
        # Alone on the topic, the first event waits out the wait, then comes by itself.
        await KafkaEventPublisher(publisher).publish(topic, events[0])
        await eventually(lambda: len(recorder.handled) == 1, timeout=60)
        # The next three come 100 ms apart: answered at the first record, each would be a
        # batch of its own; the broker holds the fetch until the third is there.
        for event in events[1:]:
            await KafkaEventPublisher(publisher).publish(topic, event)
            await asyncio.sleep(0.1)
        await eventually(lambda: len(recorder.handled) == len(events), timeout=60)
    finally:
        await publisher.stop()
        await broker.stop()
    assert [e.id for e in recorder.handled] == [e.id for e in events]
    assert batches == [1, 3]


async def test_faststream_logs_each_batch_at_debug_and_the_consumer_each_event(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    # FastStream's "Received"/"Processed" lines cost a consumer several percent of its CPU
    # at INFO; EventConsumer's own "event handled" line says more and stays at INFO.
    topic = await private_topic(servers.kafka_bootstrap)
    event = case_submitted(f"case-{uuid.uuid4()}")
    await KafkaEventPublisherOnce(servers).publish(topic, event)
    group = f"g-{uuid.uuid4()}"
    caplog.set_level(logging.DEBUG, logger=f"faststream.test-{group}")
    recorder = Recorder()
    broker, _ = await _run_consumer(servers, topic, group, recorder, RetryPolicy())
    try:
        await eventually(lambda: recorder.handled, timeout=60)
    finally:
        await broker.stop()

    batch_lines = [
        r
        for r in caplog.records
        if r.name == f"faststream.test-{group}" and r.getMessage() in ("Received", "Processed")
    ]
    assert {r.getMessage() for r in batch_lines} == {"Received", "Processed"}
    assert {r.levelno for r in batch_lines} == {logging.DEBUG}


class LeadAndFollower:
    """A lead group with a backlog of 60 records of one key, each handled in `pace`
    seconds (10 a batch), and a following group on another topic that waits while the
    lead has more than 5 left."""

    BACKLOG = 60
    RECORDS = 5

    def __init__(self, servers: Servers, pace: float) -> None:
        self.servers = servers
        self.pace = pace
        self.lead_handled: list[str] = []
        #: How many records the lead had handled when the follower handled its one.
        self.seen_by_follower: list[int] = []

    async def start(self) -> None:
        bootstrap = self.servers.kafka_bootstrap
        lead_topic = await private_topic(bootstrap)
        self.follow_topic = await private_topic(bootstrap)
        lead_group = f"lead-{uuid.uuid4()}"
        self.publisher = make_broker(bootstrap, client_id="test-lead-publisher")
        await self.publisher.connect()
        for _ in range(self.BACKLOG):
            await KafkaEventPublisher(self.publisher).publish(
                lead_topic, case_submitted("case-backlog")
            )
        self.broker = make_broker(bootstrap, client_id="test-lead-follow")
        publisher = KafkaEventPublisher(self.broker)
        lead = EventConsumer("lead", {CaseSubmitted.TYPE: self._lead}, publisher)
        follow = EventConsumer("follow", {CaseSubmitted.TYPE: self._follow}, publisher)
        subscribe(
            self.broker,
            lead_topic,
            group_id=lead_group,
            consumer=lead,
            fetch=FetchPolicy(),
            batch_size=10,
        )
        subscribe(
            self.broker,
            self.follow_topic,
            group_id=f"follow-{uuid.uuid4()}",
            consumer=follow,
            fetch=FetchPolicy(),
            after=Lead(lead_group, records=self.RECORDS, longest=60.0, poll=0.05),
        )
        await self.broker.start()
        # Once the lead has handled a batch of 10 (it is on its next), its backlog is
        # known: 50 left, above 5. Then the follower's record comes.
        await eventually(lambda: len(self.lead_handled) > 10, timeout=60)
        await KafkaEventPublisher(self.publisher).publish(
            self.follow_topic, case_submitted("case-f")
        )

    async def stop(self) -> None:
        await self.broker.stop()
        await self.publisher.stop()

    async def _lead(self, event: CloudEvent) -> None:
        await asyncio.sleep(self.pace)
        self.lead_handled.append(event.id)

    async def _follow(self, event: CloudEvent) -> None:
        self.seen_by_follower.append(len(self.lead_handled))


async def test_a_following_group_waits_while_its_lead_group_has_a_backlog(
    servers: Servers,
) -> None:
    # Notify's referrals consumer follows its cases consumer: while the cases group has
    # more than `records` records left, a referrals batch waits.
    pair = LeadAndFollower(servers, pace=0.05)
    try:
        await pair.start()
        await eventually(lambda: pair.seen_by_follower, timeout=60)
        await eventually(lambda: len(pair.lead_handled) == pair.BACKLOG, timeout=60)
    finally:
        await pair.stop()
    # Handled only when at most 5 of the lead's 60 records were left.
    assert pair.seen_by_follower[0] >= pair.BACKLOG - pair.RECORDS


async def test_a_batch_waiting_for_its_lead_goes_on_when_its_consumer_stops(
    servers: Servers,
) -> None:
    # The service stops its subscribers together: once the lead's consumer has stopped
    # it counts nothing left, so a waiting batch is handled then, not a minute later.
    pair = LeadAndFollower(servers, pace=0.1)
    try:
        await pair.start()
        # Held: the lead has about 50 records left, each a tenth of a second.
        await eventually(lambda: len(pair.lead_handled) > 20, timeout=60)
        assert pair.seen_by_follower == []
    finally:
        await pair.stop()
    assert len(pair.seen_by_follower) == 1
    assert pair.seen_by_follower[0] < pair.BACKLOG - pair.RECORDS
