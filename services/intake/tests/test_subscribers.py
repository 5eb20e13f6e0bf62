"""Intake's reader of its own cases topic: notify's SMS preference news, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lintas_intake.entrypoints.subscribers import NotifyPreferences
from lintas_shared import events as ev
from lintas_shared.consumer import RawRecord
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.topics import CASES

pytestmark = pytest.mark.unit


class DeadLetters:
    def __init__(self) -> None:
        self.parked: list[dict[str, str]] = []

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.parked.append(headers)


def record(event: CloudEvent | None = None, **headers: str) -> RawRecord:
    if event is None:
        return RawRecord(CASES, 0, 0, None, b'{"half": ', headers)
    kafka = to_kafka_record(event)
    return RawRecord(CASES, 0, 0, kafka.key, kafka.value, kafka.headers)


def preference(source: str) -> CloudEvent:
    payload = ev.SmsPreferenceChanged(
        case_id="c1", opted_out=True, channel="sms", changed_at=datetime.now(UTC)
    )
    return ev.make_event(payload, source=source, subject="c1")


async def test_only_notifys_preference_news_reaches_the_handler() -> None:
    handled: list[CloudEvent] = []

    async def handle(event: CloudEvent) -> None:
        handled.append(event)

    dead = DeadLetters()
    consumer = NotifyPreferences(
        "intake-cases", {ev.SmsPreferenceChanged.TYPE: handle}, dead_letters=dead
    )
    await consumer.consume(record(preference("/lintas/intake")))  # its own, come back
    await consumer.consume(record(ce_id="poison"))  # someone else's poison
    await consumer.consume(record(preference("/lintas/notify")))
    await consumer.consume(
        record(ce_id="p2", ce_type=ev.SmsPreferenceChanged.TYPE, ce_source="/lintas/notify")
    )
    assert [e.source for e in handled] == ["/lintas/notify"]
    assert [h["ce_id"] for h in dead.parked] == ["p2"]  # broken news for intake: parked
