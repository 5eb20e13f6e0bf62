"""The dispatcher's decisions against in-memory stores (no server): what a new
notification costs the store, and the rules checked before it is recorded."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from lintas_notify.dispatch import Dispatcher
from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus
from lintas_notify.ports import MessageStore, OptOuts
from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document

from tests.support.notify import Clock, RecordingProvider

PHONE = "+6281234567890"


class Messages:
    """A `MessageStore` in a dict, logging each call (what the store is asked)."""

    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}
        self.calls: list[str] = []

    async def schedule(
        self,
        sms: OutgoingSms,
        now: datetime,
        status: SmsStatus,
        *,
        current_country: str | None = None,
        time_zone: str | None = None,
        send_after: datetime | None = None,
        reason: str | None = None,
    ) -> tuple[Document, bool]:
        self.calls.append(f"schedule:{status.value}")
        if sms.id in self.docs:
            return copy.deepcopy(self.docs[sms.id]), False
        doc: Document = {
            "_id": sms.id,
            "kind": sms.kind.value,
            "case_id": sms.case_id,
            "case_reference": sms.case_reference,
            "to": sms.to_sealed,
            "phone_hash": sms.phone_hash,
            "body": sms.body,
            "language": sms.language,
            "template": sms.template,
            "encoding": sms.encoding,
            "segments": sms.segments,
            "causing_event": sms.causing_event,
            "status": status.value,
            "send_after": send_after or now,
            "attempts": 1 if status is SmsStatus.SENDING else 0,
            "reason": reason,
            "current_country": current_country,
            "time_zone": time_zone,
        }
        self.docs[sms.id] = doc
        return copy.deepcopy(doc), True

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None:
        self.calls.append("record_suppressed")
        self.docs.setdefault(sms.id, {"_id": sms.id, "status": "suppressed", "reason": reason})

    async def get(self, message_id: str) -> Document | None:
        self.calls.append("get")
        return copy.deepcopy(self.docs.get(message_id))

    async def claim(
        self, message_id: str, now: datetime, *, from_status: SmsStatus = SmsStatus.SCHEDULED
    ) -> Document | None:
        self.calls.append("claim")
        doc = self.docs.get(message_id)
        if doc is None or doc["status"] != from_status.value or doc["send_after"] > now:
            return None
        doc.update(status="sending", attempts=doc["attempts"] + 1)
        return copy.deepcopy(doc)

    async def note_attempt(
        self, message_id: str, now: datetime, error: str, *, another: bool
    ) -> None:
        self.calls.append("note_attempt")

    async def defer(
        self, message_id: str, until: datetime, reason: str, now: datetime, **kw: Any
    ) -> None:
        self.calls.append("defer")
        self.docs[message_id].update(status="scheduled", send_after=until, reason=reason)

    async def finish(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        *,
        from_statuses: Sequence[SmsStatus],
        reason: str | None = None,
        provider: str | None = None,
        provider_message_id: str | None = None,
        events: Sequence[CloudEvent] = (),
    ) -> bool:
        self.calls.append(f"finish:{status.value}")
        doc = self.docs[message_id]
        if doc["status"] not in [s.value for s in from_statuses]:
            return False
        doc.update(status=status.value, provider_message_id=provider_message_id)
        if status is SmsStatus.SENT:
            doc["sent_at"] = now
        return True

    async def record_report(self, *args: Any) -> bool:
        raise AssertionError("not on this path")

    async def due(self, now: datetime, limit: int = 100) -> list[Document]:
        return [
            copy.deepcopy(d)
            for d in self.docs.values()
            if d["status"] == "scheduled" and d["send_after"] <= now
        ]

    async def in_sending(self, now: datetime) -> list[Document]:
        return []

    async def sent_times(self, phone_hash: str, since: datetime) -> list[datetime]:
        self.calls.append("sent_times")
        return [
            d["sent_at"]
            for d in self.docs.values()
            if d.get("phone_hash") == phone_hash and d.get("sent_at", since) > since
        ]

    async def by_provider_id(self, provider: str, provider_message_id: str) -> Document | None:
        raise AssertionError("not on this path")

    async def forget_case(self, case_id: str, reference: str | None, now: datetime) -> list[str]:
        raise AssertionError("not on this path")

    async def forget_worker(self, phone_hash: str) -> list[str]:
        raise AssertionError("not on this path")


class OptedOut:
    def __init__(self, *phones: str) -> None:
        self.phones = set(phones)
        self.asked = 0

    async def is_opted_out(self, phone_hash: str) -> bool:
        self.asked += 1
        return phone_hash in self.phones


class NoKeys:
    async def get(self, case_id: str) -> DataKey:
        raise AssertionError("the phone was handed over: no key read")


def sms(number: int = 1) -> OutgoingSms:
    return OutgoingSms(
        id=f"sms-{number}",
        case_id="case-1",
        case_reference="LB-AAAAA",
        to="",
        to_sealed="enc:v1:sealed",
        phone_hash="hash-1",
        body="Lintas: hello",
        language="en",
        template="case_received",
        encoding="GSM-7",
        segments=1,
        causing_event=f"/lintas/intake#{number}",
        kind=MessageKind.NOTIFICATION,
    )


def wire(clock: Clock, opted_out: OptedOut | None = None) -> tuple[Dispatcher, Messages]:
    messages = Messages()
    store: MessageStore = messages  # the fakes are checked against the ports
    opt_outs: OptOuts = opted_out or OptedOut()
    provider = RecordingProvider()
    return Dispatcher(store, opt_outs, provider, NoKeys(), clock=clock), messages


async def test_a_new_notification_is_one_insert_and_one_update() -> None:
    clock = Clock()  # 10:00 in Jakarta
    dispatcher, messages = wire(clock)
    status = await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    assert status is SmsStatus.SENT
    # Reads: the opt-out and the daily count; writes: the record born `sending` (its
    # first attempt claimed) and the `sent` record.
    assert messages.calls == ["sent_times", "schedule:sending", "finish:sent"]


async def test_quiet_hours_record_it_scheduled_and_nothing_is_sent() -> None:
    clock = Clock(datetime(2026, 9, 16, 15, 0, tzinfo=Clock().now.tzinfo))  # 22:00 Jakarta
    dispatcher, messages = wire(clock)
    status = await dispatcher.send_new(sms(), current_country="ID", time_zone=None)
    assert status is SmsStatus.SCHEDULED
    [doc] = messages.docs.values()
    assert doc["reason"] == "quiet hours"
    assert doc["send_after"] > clock.now
    assert messages.calls == ["schedule:scheduled"]  # quiet hours need no count


async def test_an_opted_out_phone_gets_a_suppressed_record_only() -> None:
    dispatcher, messages = wire(Clock(), OptedOut("hash-1"))
    status = await dispatcher.send_new(sms(), current_country="ID", time_zone=None)
    assert status is SmsStatus.SUPPRESSED
    assert messages.calls == ["record_suppressed"]


async def test_a_redelivered_event_sends_nothing_twice() -> None:
    clock = Clock()
    dispatcher, messages = wire(clock)
    for _ in range(3):
        await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    assert [d["status"] for d in messages.docs.values()] == ["sent"]
    assert messages.calls.count("finish:sent") == 1


async def test_the_daily_limit_defers_the_fourth_sms() -> None:
    clock = Clock()
    dispatcher, messages = wire(clock)
    for n in range(1, 5):
        clock.advance(minutes=1)
        await dispatcher.send_new(sms(n), current_country="ID", time_zone=None, phone=PHONE)
    statuses = [d["status"] for d in messages.docs.values()]
    assert statuses == ["sent", "sent", "sent", "scheduled"]
    assert messages.docs["sms-4"]["reason"] == "worker daily limit"
    assert messages.docs["sms-4"]["send_after"] > clock.now + timedelta(hours=23)
