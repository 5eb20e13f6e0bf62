"""`lintas dlq replay` of events every consumer had already processed changes nothing.

A replay goes back to the source topic, so every consumer group of that topic sees the
event again, not only the one that parked it. Each service's consumers must therefore be
idempotent by event: here one event of each topic (case submitted, referral offered, SMS
sent), processed by all five consumer groups of the running services, is parked and
replayed, and the documents, the SMS file and the outboxes are compared before and after
each group has committed past the replayed copy.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from functools import partial
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from lintas_shared.consumer import (
    DLQ_CONSUMER,
    DLQ_FAILED_AT,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
)
from lintas_shared.envelope import from_kafka_record
from lintas_shared.events import CaseSubmitted, ReferralOffered, SmsSent
from lintas_shared.kafka_auth import client_auth
from lintas_shared.mongo import Document
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS, dead_letter_topic
from lintas_tools.cli import main
from pymongo import AsyncMongoClient

from tests.e2e.conftest import Stack
from tests.e2e.test_case_pipeline import sms_lines
from tests.support.fixtures import example_case
from tests.support.kafka import SeenRecord, collect, eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def consumer_groups(stack: Stack) -> dict[str, list[str]]:
    """Each topic's consumer groups in the stack (named by the stack fixture after its
    run id, as its databases are: e2e_intake_<run> goes with group lintas-intake-e2e-<run>)."""
    run = stack.databases["intake"].removeprefix("e2e_intake_")
    intake, referral, notify = (
        f"lintas-{name}-e2e-{run}" for name in ("intake", "referral", "notify")
    )
    return {
        CASES: [referral, notify],
        REFERRALS: [intake, f"{notify}.referrals", f"{referral}-webhooks"],
        NOTIFICATIONS: [intake],
    }


async def committed_past(
    bootstrap: str, group: str, topic: str, partition: int, offset: int
) -> bool:
    """Whether `group` has committed beyond `offset`: it handled that record and returned."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = offsets.get(TopicPartition(topic, partition))
    return committed is not None and committed.offset > offset


async def park(bootstrap: str, record: SeenRecord, consumer: str) -> str:
    """Put a copy of `record` in its DLQ as a consumer would; returns the entry's id."""
    headers = {
        **record.headers,
        DLQ_REASON: "failed after 3 attempts: RuntimeError: simulated",
        DLQ_SOURCE_TOPIC: record.topic,
        DLQ_SOURCE_PARTITION: str(record.partition),
        DLQ_SOURCE_OFFSET: str(record.offset),
        DLQ_CONSUMER: consumer,
        DLQ_FAILED_AT: "2026-09-16T00:00:00+00:00",
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **client_auth().client_options(), acks="all"
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            dead_letter_topic(record.topic),
            record.value,
            key=record.key,
            headers=[(k, v.encode()) for k, v in headers.items()],
        )
    finally:
        await producer.stop()
    return f"{sent.topic}:{sent.partition}:{sent.offset}"


async def test_replaying_events_every_consumer_processed_changes_nothing(
    stack: Stack,
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = servers.kafka_bootstrap
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post(
            "/v1/cases", headers=headers, json=example_case(external_ref=f"NGO-{uuid.uuid4()}")
        )
        assert created.status_code == 201, created.text
    case_id, reference = created.json()["id"], created.json()["reference"]

    def of_case(event_type: str) -> Any:
        return lambda r: r.key == case_id.encode() and r.headers.get("ce_type") == event_type

    # The three events, as the services published them.
    [submitted] = await collect(bootstrap, CASES, of_case(CaseSubmitted.TYPE), timeout=60)
    [offered] = await collect(bootstrap, REFERRALS, of_case(ReferralOffered.TYPE), timeout=60)
    [sms_sent] = await collect(bootstrap, NOTIFICATIONS, of_case(SmsSent.TYPE), timeout=60)
    groups = consumer_groups(stack)
    originals = (submitted, offered, sms_sent)
    for record in originals:
        for group in groups[record.topic]:
            await eventually(
                partial(
                    committed_past, bootstrap, group, record.topic, record.partition, record.offset
                ),
                timeout=60,
            )

    intake = mongo[stack.databases["intake"]]
    referral = mongo[stack.databases["referral"]]
    notify = mongo[stack.databases["notify"]]
    event_keys = [from_kafka_record(r.value, r.headers).dedupe_key for r in originals]

    async def snapshot() -> dict[str, Any]:
        return {
            "intake case": await intake["cases"].find_one({"_id": case_id}),
            "referral routing": await referral["routings"].find_one({"_id": case_id}),
            "webhook deliveries": sorted(
                [d["_id"] async for d in referral["webhook_deliveries"].find({"case_id": case_id})]
            ),
            "notify profile": await notify["cases"].find_one({"_id": case_id}),
            "notify messages": [d async for d in notify["messages"].find({"case_id": case_id})],
            "sms file": sms_lines(stack, reference),
        }

    async def settled() -> bool:
        # Every effect of the first delivery is in: the outboxes are drained and the
        # SMS is sent (and SmsSent was applied by intake, as the commit above shows).
        now = await snapshot()
        return (
            bool(now["intake case"])
            and set(event_keys[1:]) <= set(now["intake case"]["processed_events"])
            and not now["intake case"].get("outbox")
            and not now["referral routing"].get("outbox")
            and len(now["sms file"]) == 1
            and all(m["status"] == "sent" and not m.get("outbox") for m in now["notify messages"])
        )

    await eventually(settled, timeout=60)
    before = await snapshot()
    assert event_keys[0] in before["referral routing"]["processed_events"]

    # Park a copy of each, as if one consumer had given up on it, and replay it.
    monkeypatch.setenv("LINTAS_KAFKA_BOOTSTRAP", bootstrap)
    monkeypatch.setenv("LINTAS_MONGODB_URI", servers.mongodb_uri)
    monkeypatch.setenv("LINTAS_OPS_DATABASE", database_name)
    replayed: list[tuple[str, int, int]] = []
    for record, consumer in zip(originals, ("referral", "notify", "intake"), strict=True):
        entry = await park(bootstrap, record, consumer)
        answer = io.StringIO()
        code = await asyncio.to_thread(
            partial(main, ["dlq", "replay", entry, "--json"], out=answer)
        )
        assert code == 0, answer.getvalue()
        [outcome] = json.loads(answer.getvalue())["outcomes"]
        assert outcome["action"] == "replayed"
        topic, partition, offset = outcome["to"].rsplit(":", 2)
        assert topic == record.topic
        replayed.append((topic, int(partition), int(offset)))

    # Every consumer group of each topic handled its replayed copy and committed past it.
    for topic, partition, offset in replayed:
        for group in groups[topic]:
            await eventually(
                partial(committed_past, bootstrap, group, topic, partition, offset), timeout=60
            )
    after = await snapshot()
    for part, was in before.items():
        assert after[part] == was, f"the replay changed the {part}"
