"""Consumers ignore unknown fields and unknown event types on the topics they read: on
the real broker, intake's and notify's subscribers handle an event carrying fields they
do not know (at the top and nested), skip a type they do not know, park nothing, and
commit past both."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from lintas_intake.entrypoints.subscribers import cases_group
from lintas_intake.entrypoints.subscribers import register_subscribers as intake_subscribers
from lintas_intake.handlers import CaseService
from lintas_notify.entrypoints.subscribers import register_subscribers as notify_subscribers
from lintas_notify.handlers import NotifyHandlers
from lintas_shared import events as ev
from lintas_shared import topics
from lintas_shared.asyncapi import example_payload
from lintas_shared.consumer import FetchPolicy
from lintas_shared.envelope import CloudEvent, new_event, to_kafka_record
from lintas_shared.kafka import make_broker
from lintas_shared.kafka_auth import client_auth

from tests.support.kafka_groups import start_group_at_end
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

NOTIFY_SOURCE = "/lintas/notify"


class Recorder:
    """Stands in for a service's handlers: parses each event as the real ones do
    (`parse_payload`, whose refusal parks the record) and records the events this test
    sent (the topics are the real ones: running services may write to them meanwhile,
    about this test's case too, as referral routes the case it sees submitted)."""

    def __init__(self, sent: set[str]) -> None:
        self.sent = sent
        self.seen: list[tuple[str, ev.EventPayload]] = []

    async def handle(self, event: CloudEvent) -> None:
        payload = ev.parse_payload(event, ev.EVENT_TYPES[event.type])
        if event.id in self.sent:
            self.seen.append((event.type, payload))

    async def handle_together(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            await self.handle(event)

    # intake's CaseService
    apply_news = handle
    apply_news_together = handle_together
    apply_sms_preference = handle

    def __getattr__(self, name: str) -> Any:  # notify's NotifyHandlers: on_case_submitted, …
        if name.startswith("on_"):
            return self.handle
        raise AttributeError(name)


class DeadLetters:
    def __init__(self) -> None:
        self.parked: list[tuple[str, dict[str, str]]] = []

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.parked.append((topic, headers))


def _record(
    cls: type[ev.EventPayload], case_id: str, source: str, **extra: Any
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    data = {**example_payload(cls), "case_id": case_id, **extra}
    event = new_event(source=source, type_=cls.TYPE, subject=case_id, data=data)
    record = to_kafka_record(event)
    return record.key, record.value, [(k, v.encode()) for k, v in record.headers.items()]


def _unknown(type_: str, case_id: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    event = new_event(
        source="/lintas/future", type_=type_, subject=case_id, data={"anything": [1, {"x": 2}]}
    )
    record = to_kafka_record(event)
    return record.key, record.value, [(k, v.encode()) for k, v in record.headers.items()]


async def _committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return next(
        (o.offset for tp, o in offsets.items() if tp.topic == topic and tp.partition == partition),
        -1,
    )


async def test_unknown_fields_and_types_are_handled_or_skipped_never_parked(
    servers: Servers,
) -> None:
    bootstrap = servers.kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    intake_group, notify_group = f"test-tolerant-intake-{run}", f"test-tolerant-notify-{run}"
    groups = {
        (intake_group, topics.REFERRALS),
        (intake_group, topics.NOTIFICATIONS),
        (cases_group(intake_group), topics.CASES),
        (notify_group, topics.CASES),
        (f"{notify_group}.referrals", topics.REFERRALS),
    }
    for group, topic in groups:
        await start_group_at_end(bootstrap, group, topic)

    case_id = str(uuid.uuid4())
    sent: set[str] = set()
    intake, notify, dead = Recorder(sent), Recorder(sent), DeadLetters()
    broker = make_broker(bootstrap, client_id=f"test-tolerant-{run}")
    intake_subscribers(
        broker,
        group_id=intake_group,
        service=cast(CaseService, intake),
        dead_letters=dead,
        fetch=FetchPolicy(),
    )
    notify_subscribers(
        broker,
        group_id=notify_group,
        handlers=cast(NotifyHandlers, notify),
        dead_letters=dead,
        fetch=FetchPolicy(),
    )

    future = {"added_later": {"nested": True}, "priority": 3}
    amount = {"currency": "HKD", "value": "9000.00", "minor_units": 900000}
    worker = {**example_payload(ev.CaseSubmitted)["worker"], "pronouns": "she"}
    submitted = _record(ev.CaseSubmitted, case_id, "/lintas/intake", worker=worker, **future)
    records = {
        topics.REFERRALS: [
            _record(
                ev.ReferralClosed, case_id, "/lintas/referral", amounts_recovered=[amount], **future
            ),
            _unknown("org.lintas.referral.reassigned", case_id),
            _record(ev.ReferralAccepted, case_id, "/lintas/referral"),
        ],
        topics.CASES: [
            _record(ev.SmsPreferenceChanged, case_id, NOTIFY_SOURCE, channel="sms", **future),
            submitted,
            _unknown("org.lintas.case.archived", case_id),
            _record(ev.CaseErased, case_id, "/lintas/intake"),
        ],
    }

    await broker.start()
    last: dict[str, tuple[int, int]] = {}
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, **client_auth().client_options(), acks="all"
    )
    await producer.start()
    try:
        for topic, batch in records.items():
            for key, value, headers in batch:
                sent.add(dict(headers)["ce_id"].decode())
                meta = await producer.send_and_wait(topic, value, key=key, headers=headers)
                last[topic] = (meta.partition, meta.offset)

        async def all_committed() -> bool:
            for group, topic in groups:
                if topic in last:
                    partition, offset = last[topic]
                    if await _committed(bootstrap, group, topic, partition) <= offset:
                        return False
            return True

        deadline = time.monotonic() + 60
        while not await all_committed():
            assert time.monotonic() < deadline, (intake.seen, notify.seen, dead.parked)
            await asyncio.sleep(0.3)
    finally:
        await producer.stop()
        await broker.stop()

    assert dead.parked == []
    assert [t for t, _ in intake.seen if t.startswith("org.lintas.referral.")] == [
        ev.ReferralClosed.TYPE,
        ev.ReferralAccepted.TYPE,
    ]
    assert [t for t, _ in intake.seen if t.startswith("org.lintas.case.")] == [
        ev.SmsPreferenceChanged.TYPE
    ]
    assert sorted(t for t, _ in notify.seen) == sorted(
        [
            ev.ReferralClosed.TYPE,
            ev.ReferralAccepted.TYPE,
            ev.SmsPreferenceChanged.TYPE,
            ev.CaseSubmitted.TYPE,
            ev.CaseErased.TYPE,
        ]
    )
    closed = next(p for t, p in intake.seen if t == ev.ReferralClosed.TYPE)
    assert isinstance(closed, ev.ReferralClosed)
    assert closed.amounts_recovered[0].value == "9000.00"
    assert "added_later" not in closed.model_dump()
