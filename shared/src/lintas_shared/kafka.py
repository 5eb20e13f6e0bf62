"""Kafka broker factory, the event publisher, and topic administration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.logging import get_logger, library_logger
from lintas_shared.metrics import EVENTS_PUBLISHED
from lintas_shared.tracing import TRACEPARENT_HEADER, current_traceparent

log = get_logger(__name__)

#: Largest record value we produce or accept; Kafka's own default limit is 1 MiB.
MAX_RECORD_BYTES = 1_000_000


def make_broker(bootstrap: str, *, client_id: str) -> KafkaBroker:
    """A broker whose producer is idempotent and waits for all in-sync replicas."""
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES + 64_000,
        graceful_timeout=15.0,
        # Through our JSON pipeline (and its redaction), not FastStream's own handler.
        logger=library_logger(f"faststream.{client_id}"),
    )


class KafkaEventPublisher:
    """Publishes CloudEvents (binary mode) and raw records through a started broker."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, topic: str, event: CloudEvent) -> None:
        """Publish one event; returns once the broker has acknowledged it.

        The W3C `traceparent` header names the active span (the relay's producer span)
        when there is one, so the consumer's span becomes its child; `ce_traceparent`
        keeps the context the event was created in.
        """
        record = to_kafka_record(event)
        headers = record.headers
        active = current_traceparent()
        if active is not None:
            headers = {**headers, TRACEPARENT_HEADER: active}
        await self.publish_raw(topic, record.key, record.value, headers)
        EVENTS_PUBLISHED.labels(topic, event.type).inc()

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        """Publish bytes as they are (used for dead letters and replays)."""
        await self._broker.publish(value or b"", topic, key=key, headers=headers)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    config: dict[str, Any] | None = None,
) -> list[str]:
    """Create any of `names` that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="lintas-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in names if n not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    n,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    topic_configs=config or {},
                )
                for n in wanted
            ]
        )
        for name, code, *_ in response.topic_errors:
            # Another instance may have created it between our check and our request.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"could not create Kafka topic {name}: error code {code}")
        log.info("kafka topics created", topics=wanted, partitions=partitions)
        return wanted
    finally:
        await admin.close()
