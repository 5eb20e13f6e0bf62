"""The outbox relay on the real store and broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.envelope import CloudEvent, from_kafka_record
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry, push_to_outbox
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from tests.support.fixtures import case_submitted
from tests.support.kafka import collect, eventually
from tests.support.kafka_topics import private_topic
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


class FailingPublisher:
    async def publish(self, topic: str, event: CloudEvent) -> None:
        raise ConnectionError("broker down")


async def test_relay_publishes_in_order_then_empties_the_outbox(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    collection = mongo[database_name]["things"]
    case_id = f"case-{uuid.uuid4()}"
    events = [case_submitted(case_id) for _ in range(3)]
    await collection.insert_one({"_id": case_id, "state": "new", OUTBOX_FIELD: []})
    await collection.update_one(
        {"_id": case_id},
        {"$set": {"state": "changed"}, **push_to_outbox(*(outbox_entry(topic, e) for e in events))},
    )
    await collection.insert_one({"_id": "quiet", OUTBOX_FIELD: []})

    broker = make_broker(servers.kafka_bootstrap, client_id="test-relay")
    await broker.connect()
    try:
        relay = OutboxRelay(collection, KafkaEventPublisher(broker))
        assert await relay.backlog() == 1
        assert await relay.relay_once() == 3
        assert await relay.relay_once() == 0
        assert await relay.backlog() == 0
    finally:
        await broker.stop()

    doc = await collection.find_one({"_id": case_id})
    assert doc is not None
    assert doc[OUTBOX_FIELD] == []
    assert doc["state"] == "changed"
    seen = await collect(servers.kafka_bootstrap, topic, lambda r: True, count=3)
    assert [from_kafka_record(r.value, r.headers).id for r in seen] == [e.id for e in events]


async def test_entries_stay_when_the_broker_refuses(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["things"]
    event = case_submitted("case-kept")
    await collection.insert_one(
        {"_id": "case-kept", OUTBOX_FIELD: [outbox_entry("lintas.cases.v1", event)]}
    )
    relay = OutboxRelay(collection, FailingPublisher())
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    doc = await collection.find_one({"_id": "case-kept"})
    assert doc is not None
    assert [entry["id"] for entry in doc[OUTBOX_FIELD]] == [event.id]


class RecordingPublisher:
    def __init__(self) -> None:
        self.fail = False
        self.published: list[str] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published.append(event.id)


async def pending_docs(
    collection: AsyncCollection[Document], count: int, age: timedelta = timedelta(0)
) -> None:
    when = datetime.now(UTC) - age
    await collection.insert_many(
        [
            {
                "_id": f"case-{n}",
                OUTBOX_FIELD: [
                    outbox_entry("t", case_submitted(f"case-{n}").model_copy(update={"time": when}))
                ],
            }
            for n in range(count)
        ]
    )


async def test_a_full_sweep_of_entries_nobody_announced_is_repeated_until_none_are_left(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # What a crashed process left behind: the relay was told about none of it.
    collection = mongo[database_name]["things"]
    await pending_docs(collection, 5)
    publisher = RecordingPublisher()
    relay = OutboxRelay(collection, publisher, batch_size=3)
    assert await relay.relay_once() == 3
    assert relay.more_left_behind
    assert await relay.relay_once() == 2
    assert not relay.more_left_behind
    assert len(set(publisher.published)) == 5


async def test_a_full_sweep_of_fresh_entries_the_relay_knows_is_not_repeated_at_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # Under steady load the sweep meets entries that are being published anyway; once,
    # treating them as "more to do" kept sweeps (whole-collection reads) back to back.
    collection = mongo[database_name]["things"]
    await pending_docs(collection, 4)
    publisher = RecordingPublisher()
    relay = OutboxRelay(collection, publisher, batch_size=3)
    publisher.fail = True
    with pytest.raises(ConnectionError):
        await relay.relay_once()  # the sweep saw three and could not publish them
    publisher.fail = False
    assert await relay.relay_once() == 3
    assert not relay.more_left_behind  # a full batch, but known and fresh
    assert await relay.relay_once() == 1  # the next sweep (here: at once) gets the rest


async def test_started_the_relay_sweeps_in_the_background_until_nothing_is_left_behind(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["things"]
    await pending_docs(collection, 7, age=timedelta(minutes=10))
    publisher = RecordingPublisher()
    relay = OutboxRelay(collection, publisher, batch_size=3, poll_interval=0.05)
    relay.start()
    try:
        await eventually(lambda: _published(publisher, 7), timeout=30)
    finally:
        await relay.stop()
    assert await relay.backlog() == 0
    assert sorted(set(publisher.published)) == sorted(publisher.published)  # each once


async def _published(publisher: RecordingPublisher, count: int) -> bool:
    return len(publisher.published) >= count


class SlowPublisher:
    """Acknowledges after a moment, counting how many publishes overlap."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.published: list[str] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.published.append(event.id)


async def test_documents_go_in_parallel_and_each_ones_entries_in_order(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["things"]
    events = {f"case-{n}": [case_submitted(f"case-{n}") for _ in range(3)] for n in range(8)}
    await collection.insert_many(
        [
            {"_id": doc_id, OUTBOX_FIELD: [outbox_entry("t", e) for e in evs]}
            for doc_id, evs in events.items()
        ]
    )
    publisher = SlowPublisher()
    relay = OutboxRelay(collection, publisher, concurrency=4)
    for doc_id in events:
        relay.wake(doc_id)
    assert await relay.relay_once(sweep=False) == 24
    assert publisher.most_in_flight == 4
    for evs in events.values():
        order = [publisher.published.index(e.id) for e in evs]
        assert order == sorted(order)
    assert await relay.backlog() == 0
