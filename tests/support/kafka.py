"""Reading and writing raw Kafka records in tests, as an outside observer would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from lintas_shared.kafka_auth import client_auth


@dataclass(frozen=True)
class SeenRecord:
    """A record as a test saw it on the wire."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


async def produce_raw(
    bootstrap: str,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Produce one record exactly as given (for poison and hand-made events)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        acks="all",
        max_request_size=4_000_000,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in (headers or {}).items()]
        )
    finally:
        await producer.stop()


async def collect(
    bootstrap: str,
    topic: str,
    predicate: Callable[[SeenRecord], bool],
    *,
    count: int = 1,
    timeout: float = 60.0,
    settle: float = 0.0,
) -> list[SeenRecord]:
    """Read `topic` from the beginning until `count` records match (or time runs out).

    With `settle`, keep reading that many seconds after the count is reached, so a test
    can prove that no extra (duplicate) record follows.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        group_id=f"test-observer-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    matched: list[SeenRecord] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    seen = SeenRecord(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        {k: v.decode() for k, v in r.headers},
                    )
                    if predicate(seen):
                        matched.append(seen)
            if len(matched) >= count and settle_until is None:
                if settle <= 0:
                    break
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return matched


async def eventually(
    check: Callable[[], object], *, timeout: float = 60.0, interval: float = 0.25
) -> object:
    """Poll an async or sync `check` until it returns something truthy; fail on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
