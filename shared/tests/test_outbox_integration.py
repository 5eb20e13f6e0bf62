"""The outbox relay on the real store and broker."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from lintas_shared.envelope import CloudEvent, from_kafka_record
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry
from lintas_shared.unit_of_work import (
    OUTBOX_SINCE_FIELD,
    Decision,
    MongoVersionedDocuments,
    Outgoing,
    UnitOfWork,
)
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.kafka import collect, eventually
from tests.support.kafka_topics import private_topic
from tests.support.servers import Servers

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Thing:
    id: str
    state: str


class ThingCodec:
    def id_of(self, aggregate: Thing) -> str:
        return aggregate.id

    async def encode(self, aggregate: Thing) -> Document:
        return {"state": aggregate.state}

    async def decode(self, doc: Document) -> Thing:
        return Thing(doc["_id"], doc["state"])


class FailingPublisher:
    async def publish(self, topic: str, event: CloudEvent) -> None:
        raise ConnectionError("broker down")


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, topic: str, event: CloudEvent) -> None:
        self.published.append(event.id)


async def documents(
    mongo: AsyncMongoClient[Document], database_name: str
) -> MongoVersionedDocuments:
    docs = MongoVersionedDocuments(mongo[database_name]["things"])
    await docs.ensure_indexes()
    return docs


async def test_relay_publishes_a_writers_outbox_in_order_then_empties_it(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    docs = await documents(mongo, database_name)
    broker = make_broker(servers.kafka_bootstrap, client_id="test-relay")
    await broker.connect()
    case_id = f"case-{uuid.uuid4()}"
    events = [case_submitted(case_id) for _ in range(3)]
    try:
        relay = OutboxRelay(docs, KafkaEventPublisher(broker))
        work = UnitOfWork(docs, ThingCodec(), on_commit=relay.on_commit)
        await work.add(Thing(case_id, "new"), [Outgoing(topic, events[0])])
        await work.change(
            case_id,
            lambda t: Decision(
                replace(t, state="changed"), [Outgoing(topic, e) for e in events[1:]]
            ),
        )
        await work.add(Thing("quiet", "new"))
        assert await relay.relay_once(search=False) == 3
        assert await relay.relay_once() == 0
    finally:
        await broker.stop()

    doc = await docs.read(case_id)
    assert doc is not None
    assert doc[OUTBOX_FIELD] == []
    assert OUTBOX_SINCE_FIELD not in doc
    assert doc["state"] == "changed"
    seen = await collect(servers.kafka_bootstrap, topic, lambda r: True, count=3)
    assert [from_kafka_record(r.value, r.headers).id for r in seen] == [e.id for e in events]


async def test_entries_stay_stored_and_pending_when_the_broker_refuses(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    docs = await documents(mongo, database_name)
    relay = OutboxRelay(docs, FailingPublisher())
    work = UnitOfWork(docs, ThingCodec(), on_commit=relay.on_commit)
    event = case_submitted("case-kept")
    await work.add(Thing("case-kept", "new"), [Outgoing("lintas.cases.v1", event)])
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    doc = await docs.read("case-kept")
    assert doc is not None
    assert [entry["id"] for entry in doc[OUTBOX_FIELD]] == [event.id]
    assert relay.pending()[0] == 1


async def left_behind(docs: MongoVersionedDocuments, count: int, age: timedelta) -> list[str]:
    """What a crashed instance left: written, its relay never told."""
    when = datetime.now(UTC) - age
    ids = [f"case-{n}" for n in range(count)]
    await docs.collection.insert_many(
        [
            {
                "_id": doc_id,
                "version": 1,
                OUTBOX_FIELD: [outbox_entry("t", case_submitted(doc_id))],
                OUTBOX_SINCE_FIELD: when,
            }
            for doc_id in ids
        ]
    )
    return ids


async def test_started_the_relay_finds_and_publishes_what_a_crashed_writer_left_each_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    docs = await documents(mongo, database_name)
    await left_behind(docs, 7, age=timedelta(minutes=10))
    publisher = RecordingPublisher()
    relay = OutboxRelay(docs, publisher, batch_size=3, poll_interval=0.05, search_interval=0.05)
    relay.start()
    try:
        await eventually(lambda: _published(publisher, 7), timeout=30)
    finally:
        await relay.stop()
    assert await docs.collection.count_documents({OUTBOX_SINCE_FIELD: {"$exists": True}}) == 0
    assert len(publisher.published) == 7
    assert len(set(publisher.published)) == 7


async def test_far_behind_the_relay_holds_few_documents_and_still_publishes_each_once(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # What was not kept is found again by the range read on `outbox_since`, four
    # documents of the thirty a pass, on the real store.
    docs = await documents(mongo, database_name)
    publisher = RecordingPublisher()
    relay = OutboxRelay(docs, publisher, batch_size=4, keep_entries=2, keep_ids=5)
    work = UnitOfWork(docs, ThingCodec(), on_commit=relay.on_commit)
    events = [case_submitted(f"case-{n}") for n in range(30)]
    for n, event in enumerate(events):
        await work.add(Thing(f"thing-{n}", "new"), [Outgoing("t", event)])
    assert relay.kept == 5
    assert await relay.relay_once(search=False) == 30
    assert sorted(publisher.published) == sorted(e.id for e in events)
    assert await docs.collection.count_documents({OUTBOX_SINCE_FIELD: {"$exists": True}}) == 0
    assert relay.pending() == (0, None)


async def test_documents_written_before_outbox_times_get_one_at_start_up(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["things"]
    await collection.insert_one(
        {"_id": "old", OUTBOX_FIELD: [outbox_entry("t", case_submitted("old"))]}
    )
    await collection.insert_one({"_id": "done", OUTBOX_FIELD: []})
    docs = await documents(mongo, database_name)
    publisher = RecordingPublisher()
    assert await OutboxRelay(docs, publisher).relay_once() == 1
    assert len(publisher.published) == 1
    assert await collection.count_documents({OUTBOX_SINCE_FIELD: {"$exists": True}}) == 0


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
    docs = await documents(mongo, database_name)
    publisher = SlowPublisher()
    relay = OutboxRelay(docs, publisher, concurrency=4)
    work = UnitOfWork(docs, ThingCodec(), on_commit=relay.on_commit)
    events = {f"case-{n}": [case_submitted(f"case-{n}") for _ in range(3)] for n in range(8)}
    for doc_id, evs in events.items():
        await work.add(Thing(doc_id, "new"), [Outgoing("t", e) for e in evs])
    assert await relay.relay_once(search=False) == 24
    assert publisher.most_in_flight == 4
    for evs in events.values():
        order = [publisher.published.index(e.id) for e in evs]
        assert order == sorted(order)
    assert await docs.collection.count_documents({OUTBOX_SINCE_FIELD: {"$exists": True}}) == 0


async def test_two_relays_on_one_document_publish_everything_and_leave_it_empty(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    # Two instances: one's writer hands its relay the outbox, the other's search finds the
    # same document; the outbox ends empty and every entry was published (some twice,
    # which consumers drop by the event's id).
    docs = await documents(mongo, database_name)
    mine, theirs = RecordingPublisher(), RecordingPublisher()
    relay = OutboxRelay(docs, mine)
    other = OutboxRelay(docs, theirs)
    work = UnitOfWork(docs, ThingCodec(), on_commit=relay.on_commit)
    evs = [case_submitted("case-1") for _ in range(4)]
    await work.add(Thing("case-1", "new"), [Outgoing("t", e) for e in evs[:2]])
    await work.change("case-1", lambda t: Decision(t, [Outgoing("t", e) for e in evs[2:]]))
    await asyncio.gather(relay.relay_once(search=False), other.relay_once())
    doc = await docs.read("case-1")
    assert doc is not None
    assert doc[OUTBOX_FIELD] == []
    assert set(mine.published) | set(theirs.published) == {e.id for e in evs}
