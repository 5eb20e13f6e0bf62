"""Raw Kafka work done from outside the services: poison, a group rewind, reading topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from lintas_shared.kafka_auth import client_auth
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS

#: Marks every poison record; the services keep the original headers in the DLQ copy.
POISON_HEADER = "lintas_faults_poison"
#: A handled event type on each topic, for the "wrong schema" poison.
HANDLED_TYPE = {
    CASES: "org.lintas.case.submitted",
    REFERRALS: "org.lintas.referral.offered",
    NOTIFICATIONS: "org.lintas.notification.sms_sent",
}
#: (DLQ consumer name) of each consumer that reads a topic and must park its poison.
TOPIC_CONSUMERS = {
    CASES: ("notify", "referral"),
    REFERRALS: ("intake-news", "notify", "referral-webhooks"),
    NOTIFICATIONS: ("intake-news",),
}
POISON_KINDS = ("bad_json", "wrong_schema", "missing_ce_headers", "big_body")
#: Consumers that never read the payload of the "wrong schema" type, so do not refuse it:
#: referral's webhook consumer looks up the referral's partner first and ignores an
#: event for a case it does not know (nothing to deliver), as documented in webhooks.py.
NOT_PARSING = {(REFERRALS, "referral-webhooks")}


def expected_consumers(topic: str, kind: str) -> tuple[str, ...]:
    """The consumers that must park a poison record of `kind` on `topic`."""
    return tuple(
        c
        for c in TOPIC_CONSUMERS[topic]
        if not (kind == "wrong_schema" and (topic, c) in NOT_PARSING)
    )


@dataclass(frozen=True)
class Poison:
    """One malformed record as injected."""

    id: str
    topic: str
    kind: str
    size: int


def _ce_headers(topic: str, subject: str) -> dict[str, str]:
    return {
        "ce_id": str(uuid.uuid4()),
        "ce_source": "/lintas/faults",
        "ce_type": HANDLED_TYPE[topic],
        "ce_specversion": "1.0",
        "ce_time": datetime.now(UTC).isoformat(),
        "ce_subject": subject,
        "content-type": "application/json",
    }


def poison_record(topic: str, kind: str, big_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The value and headers of one poison record of `kind` for `topic`."""
    subject = f"case-poison-{uuid.uuid4().hex[:8]}"
    headers = _ce_headers(topic, subject)
    if kind == "bad_json":
        return b'{"case_id": "x", "broken": ', headers
    if kind == "wrong_schema":
        return json.dumps({"case_id": subject, "unexpected": [1, 2, 3]}).encode(), headers
    if kind == "missing_ce_headers":
        return json.dumps({"case_id": subject}).encode(), {"content-type": "application/json"}
    if kind == "big_body":
        # `big_bytes` of a JSON object cut short: every consumer must refuse it, even one
        # that never reads the payload of a type it handles.
        filler = "x" * max(0, big_bytes - 40)
        return ('{"case_id": "' + subject + '", "filler": "' + filler).encode(), headers
    raise ValueError(kind)


async def inject_poison(bootstrap: str, topic: str, big_bytes: int, tag: str) -> list[Poison]:
    """Produce one record of each poison kind to `topic`."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        acks="all",
        max_request_size=big_bytes + 1_000_000,
    )
    await producer.start()
    injected = []
    try:
        for kind in POISON_KINDS:
            value, headers = poison_record(topic, kind, big_bytes)
            poison_id = f"{tag}-{topic}-{kind}"
            headers[POISON_HEADER] = poison_id
            await producer.send_and_wait(
                topic,
                value,
                key=f"poison-{kind}".encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
            injected.append(Poison(poison_id, topic, kind, len(value)))
    finally:
        await producer.stop()
    return injected


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(20):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no partitions known for {topic}")


async def rewind_group(bootstrap: str, group: str, topic: str, within: float = 60.0) -> int:
    """Commit offset 0 on every partition of `topic` for `group` (its members stopped).

    Returns how many records the group had committed, i.e. how many will be redelivered.
    The broker accepts a commit from outside the group only while the group has no
    members, so this retries (bounded) until the stopped members have left it.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        before = 0
        for tp in tps:
            before += await consumer.committed(tp) or 0
        deadline = time.monotonic() + within
        while True:
            try:
                await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
                return before
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Record:
    """A record read back for the final checks."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


async def read_all(bootstrap: str, topic: str, within: float = 120.0) -> list[Record]:
    """Every record of `topic` up to its end offsets as of now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        records: list[Record] = []
        deadline = time.monotonic() + within
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                for r in batch:
                    if r.offset < ends[tp]:
                        records.append(
                            Record(
                                r.topic,
                                r.partition,
                                r.offset,
                                r.key,
                                r.value,
                                {k: v.decode(errors="replace") for k, v in r.headers},
                            )
                        )
                    if r.offset >= ends[tp] - 1:
                        remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end within {within:.0f}s")
        return records
    finally:
        await consumer.stop()
