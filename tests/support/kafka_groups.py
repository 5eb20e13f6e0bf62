"""Consumer groups that start at the end of a topic, for services started in a test."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lintas_shared.kafka_auth import client_auth


async def start_group_at_end(bootstrap: str, group_id: str, topic: str) -> None:
    """Commit the current end of `topic` for `group_id`.

    A service subscribes new groups from the earliest record; started in the middle of
    a test session it would first work through every record earlier tests left on the
    shared topics. That only costs time, and time is what a test waiting for its own
    record has least of on a shared machine.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        group_id=group_id,
        enable_auto_commit=False,
    )
    await admin.start()
    await consumer.start()
    try:
        [described] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
        await admin.close()
