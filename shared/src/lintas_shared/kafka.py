"""Kafka broker factory, the event publisher, and topic administration."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.kafka_auth import KafkaAuth, client_auth
from lintas_shared.logging import get_logger, library_logger
from lintas_shared.metrics import EVENTS_PUBLISHED
from lintas_shared.settings import HANDLER_GRACE_SECONDS
from lintas_shared.topics import DLQ_TOPIC_CONFIG, is_dead_letter_topic
from lintas_shared.tracing import TRACEPARENT_HEADER, current_traceparent

log = get_logger(__name__)

#: Largest record value we produce or accept; Kafka's own default limit is 1 MiB.
MAX_RECORD_BYTES = 1_000_000
#: DescribeConfigs (v1 and later) `config_source` of a setting made on the topic itself.
_TOPIC_OWN_SETTING = 1


def make_broker(bootstrap: str, *, client_id: str, auth: KafkaAuth | None = None) -> KafkaBroker:
    """A broker whose producer is idempotent and waits for all in-sync replicas, logged
    in as `auth`'s principal (by default as `LINTAS_KAFKA_*` say: the admin unless set)."""
    return KafkaBroker(
        bootstrap,
        client_id=client_id,
        security=(auth or client_auth()).security(),
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_RECORD_BYTES + 64_000,
        graceful_timeout=HANDLER_GRACE_SECONDS,
        # Through our JSON pipeline (and its redaction), not FastStream's own handler.
        logger=library_logger(f"faststream.{client_id}"),
        # FastStream's "Received"/"Processed" per batch at DEBUG: EventConsumer logs one
        # line per handled event with its case, trace and outcome, and FastStream's
        # errors keep their own level. At INFO they took 3-4% of a service's CPU samples.
        log_level=logging.DEBUG,
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
    auth: KafkaAuth | None = None,
) -> list[str]:
    """Create any of `names` that do not exist yet; returns the ones created.

    Logs in as `auth`, by default as `LINTAS_KAFKA_*` say (the admin unless set).

    A dead-letter topic is created with `DLQ_TOPIC_CONFIG` (under `config`), and an
    existing one that does not set those itself is given them (see `_keep_dead_letters`).
    """
    names = list(names)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="lintas-admin",
        **(auth or client_auth()).client_options(),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _keep_dead_letters(admin, [n for n in names if n in existing])
        wanted = [n for n in names if n not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    n,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    topic_configs=topic_config(n, config or {}),
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


def topic_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings topic `name` is created with: `config`, over `DLQ_TOPIC_CONFIG` for a
    dead-letter topic."""
    return {**DLQ_TOPIC_CONFIG, **config} if is_dead_letter_topic(name) else dict(config)


async def _keep_dead_letters(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    """Give existing dead-letter topics the `DLQ_TOPIC_CONFIG` settings they do not set
    themselves (topics created before those settings, or by hand), keeping the settings
    they do: an operator's own `retention.ms` stays.

    Best effort: a broker that refuses (no ALTER_CONFIGS permission, say) is logged and
    the service starts anyway, with the retention the topic has.
    """
    dead_letters = [t for t in topics if is_dead_letter_topic(t)]
    if not dead_letters:
        return
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in dead_letters]
        )
        changes: list[ConfigResource] = []
        for response in responses:
            if response.API_VERSION < 1:  # v0 cannot tell the topic's settings from the broker's
                raise RuntimeError("the broker answers DescribeConfigs v0 only")
            for code, message, _, name, entries in response.resources:
                if code:
                    raise RuntimeError(f"describing {name}: error code {code} {message or ''}")
                # AlterConfigs replaces all of a topic's own settings: send them all back.
                own = {e[0]: e[1] for e in entries if e[3] == _TOPIC_OWN_SETTING}
                # "-1" on retention.ms was the default before dead letters expired.
                missing = {
                    k: v
                    for k, v in DLQ_TOPIC_CONFIG.items()
                    if k not in own or (k == "retention.ms" and own[k] == "-1")
                }
                if missing and None not in own.values():  # a hidden (sensitive) value: skip
                    changes.append(
                        ConfigResource(ConfigResourceType.TOPIC, name, {**own, **missing})
                    )
        if not changes:
            return
        for response in await admin.alter_configs(changes):
            for code, message, _, name in response.resources:
                if code:
                    raise RuntimeError(f"altering {name}: error code {code} {message or ''}")
        log.info(
            "dead-letter topic settings applied",
            topics=[c.name for c in changes],
            settings=dict(DLQ_TOPIC_CONFIG),
        )
    except Exception as exc:
        log.warning(
            "could not check the settings of the dead-letter topics; they keep theirs",
            topics=dead_letters,
            error=f"{type(exc).__name__}: {exc}",
        )
