"""An outside observer of the topics: when did each case's referral offer and SMS appear?

A plain aiokafka consumer (no group, every partition assigned, starting at the end)
reads `lintas.referrals.v1` and `lintas.notifications.v1` and remembers, per case id
(the record key), the broker timestamp of the first `referral offered` and the first
`sms sent`. The record timestamp is the producer's clock at the moment the service
published the event, so the observer's own reading delay does not count as latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lintas_shared.kafka_auth import client_auth
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS

OFFERED = "org.lintas.referral.offered"
SMS_SENT = "org.lintas.notification.sms_sent"
SUBMITTED = "org.lintas.case.submitted"


@dataclass
class RecordShape:
    """The size of a real `case submitted` record, so baselines send the same bytes."""

    value_bytes: int = 0
    header_bytes: int = 0
    header_count: int = 0


@dataclass
class Observer:
    """Reads the topics in the background; `offered` and `sms` map case id -> epoch s."""

    bootstrap: str
    offered: dict[str, float] = field(default_factory=dict)
    sms: dict[str, float] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=lambda: {OFFERED: 0, SMS_SENT: 0})
    shape: RecordShape = field(default_factory=RecordShape)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the three topics at their current end, then read."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_auth().client_options(),
            enable_auto_commit=False,
            client_id="lintas-bench-observer",
            fetch_max_wait_ms=100,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, **client_auth().client_options()
        )
        await admin.start()
        try:
            described = await admin.describe_topics([CASES, REFERRALS, NOTIFICATIONS])
        finally:
            await admin.close()
        partitions = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
        await consumer.start()
        if not partitions:
            await consumer.stop()
            raise RuntimeError("the observer found no partitions; are the topics created?")
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="bench-observer")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for records in batches.values():
                for record in records:
                    self._see(record)

    def _see(self, record: object) -> None:
        headers = dict(getattr(record, "headers", ()) or ())
        kind = headers.get("ce_type", b"").decode()
        key = getattr(record, "key", None)
        if not key:
            return
        case_id = key.decode()
        seen_at = float(getattr(record, "timestamp", 0)) / 1000.0
        if kind == OFFERED:
            target = self.offered
        elif kind == SMS_SENT:
            target = self.sms
        else:
            if kind == SUBMITTED and not self.shape.value_bytes:
                value = getattr(record, "value", b"") or b""
                self.shape = RecordShape(
                    value_bytes=len(value),
                    header_bytes=sum(len(k) + len(v) for k, v in headers.items()),
                    header_count=len(headers),
                )
            return
        if case_id in target:
            self.duplicates[kind] += 1
        else:
            target[case_id] = seen_at

    async def stop(self) -> None:
        """Stop reading and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def failed(self) -> BaseException | None:
        """The error that stopped the reader, if it stopped."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None


async def consumer_lag(bootstrap: str, groups: list[str], topics: list[str]) -> dict[str, int]:
    """Records each consumer group has yet to process on `topics` (end minus committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **client_auth().client_options(), enable_auto_commit=False
    )
    await admin.start()
    await consumer.start()
    try:
        described = await admin.describe_topics(topics)
        partitions = [
            TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
        ]
        ends = await consumer.end_offsets(partitions)
        lag: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            # Only topics the group consumes (has committed on); a partition of such a
            # topic without a commit yet is read from its start (auto_offset_reset).
            done = {tp: m.offset for tp, m in committed.items() if m.offset >= 0}
            consumed = {tp.topic for tp in done}
            lag[group] = sum(
                max(0, ends[tp] - done.get(tp, 0)) for tp in partitions if tp.topic in consumed
            )
        return lag
    finally:
        await consumer.stop()
        await admin.close()
