"""The dispatcher's decisions against in-memory stores (no server): what a new
notification costs the store, and the rules checked before it is recorded."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from lintas_notify.adapters.message_repository import LEASE
from lintas_notify.dispatch import Dispatcher
from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus
from lintas_notify.ports import (
    CaseKeyReader,
    MessageStore,
    OptOuts,
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document

from tests.support.notify import Clock, RecordingProvider, Sleeps

PHONE = "+6281234567890"


class Messages:
    """A `MessageStore` in a dict, logging each call (what the store is asked); its
    conditions are the repository's: a lease per attempt, named by its `claim_id`."""

    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}
        self.calls: list[str] = []
        self._claims = itertools.count(1)

    def _take(self, doc: Document, now: datetime) -> None:
        doc.update(
            status="sending",
            lease_until=now + LEASE,
            due_at=now + LEASE,
            claim_id=f"claim-{next(self._claims)}",
            counted_at=now,
        )

    @staticmethod
    def _free(doc: Document, now: datetime) -> bool:
        return doc.get("lease_until") is None or doc["lease_until"] <= now

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
            "due_at": send_after or now,
        }
        if status is SmsStatus.SENDING:
            self._take(doc, now)
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
        if (
            doc is None
            or doc["status"] != from_status.value
            or doc["send_after"] > now
            or not self._free(doc, now)
        ):
            return None
        self._take(doc, now)
        doc["attempts"] += 1
        return copy.deepcopy(doc)

    async def note_attempt(
        self,
        message_id: str,
        now: datetime,
        error: str,
        *,
        another: bool,
        claim: str | None,
        kind: MessageKind = MessageKind.NOTIFICATION,
    ) -> bool:
        self.calls.append("note_attempt")
        doc = self.docs[message_id]
        if doc["status"] != "sending" or doc.get("claim_id") != claim:
            return False
        doc.update(lease_until=now + LEASE if another else now, due_at=now + LEASE)
        doc["attempts"] += 1 if another else 0
        return True

    async def defer(
        self,
        message_id: str,
        until: datetime,
        reason: str,
        now: datetime,
        *,
        from_status: SmsStatus = SmsStatus.SCHEDULED,
        kind: MessageKind = MessageKind.NOTIFICATION,
        claim: str | None = None,
    ) -> bool:
        self.calls.append("defer")
        doc = self.docs[message_id]
        if doc["status"] != from_status.value:
            return False
        if from_status is SmsStatus.SENDING and (
            doc.get("claim_id") != claim or not self._free(doc, now)
        ):
            return False
        doc.update(status="scheduled", send_after=until, due_at=until, reason=reason)
        doc.pop("lease_until", None)
        doc.pop("counted_at", None)
        return True

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
        claim: str | None = None,
        version: int | None = None,
    ) -> bool:
        self.calls.append(f"finish:{status.value}")
        doc = self.docs[message_id]
        if doc["status"] not in [s.value for s in from_statuses]:
            return False
        if claim is not None and doc.get("claim_id") != claim:
            return False
        doc.update(status=status.value, provider_message_id=provider_message_id)
        doc.pop("lease_until", None)
        doc.pop("due_at", None)
        if status is SmsStatus.SENT:
            doc["sent_at"] = now
        else:
            doc.pop("counted_at", None)
        return True

    async def record_report(self, *args: Any) -> bool:
        raise AssertionError("not on this path")

    async def due(self, now: datetime, limit: int = 100) -> list[Document]:
        return [
            copy.deepcopy(d)
            for d in self.docs.values()
            if d["status"] in ("scheduled", "sending")
            and d.get("due_at") is not None
            and d["due_at"] <= now
        ]

    async def in_sending(self, now: datetime) -> list[Document]:
        return [
            copy.deepcopy(d)
            for d in self.docs.values()
            if d["status"] == "sending" and self._free(d, now)
        ]

    async def sent_times(self, phone_hash: str, since: datetime) -> list[datetime]:
        self.calls.append("sent_times")
        return [
            d["counted_at"]
            for d in self.docs.values()
            if d.get("phone_hash") == phone_hash and d.get("counted_at", since) > since
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

    async def current(self, case_id: str) -> DataKey:
        raise AssertionError("the phone was handed over: no key read")


class _PlainKey:
    def decrypt(self, field: str, sealed: str) -> str:
        return PHONE


class Keys:
    """The vault, for a send that was not handed the phone (the schedule loop's)."""

    async def get(self, case_id: str) -> DataKey:
        raise AssertionError("a send reads the key from the vault (current)")

    async def current(self, case_id: str) -> DataKey:
        return cast(DataKey, _PlainKey())


class Crashing(RecordingProvider):
    """A provider call that dies with something other than a provider error (a bug, a
    cancelled task), `crashes` times: the attempt stops and leaves the message `sending`."""

    def __init__(self, crashes: int, failures: list[ProviderError] | None = None) -> None:
        super().__init__(failures)
        self.crashes = crashes

    async def send(self, sms: OutgoingSms) -> str:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("stopped mid-send")
        return await super().send(sms)


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


def wire(
    clock: Clock,
    opted_out: OptedOut | None = None,
    provider: RecordingProvider | None = None,
    keys: CaseKeyReader | None = None,
) -> tuple[Dispatcher, Messages]:
    messages = Messages()
    store: MessageStore = messages  # the fakes are checked against the ports
    opt_outs: OptOuts = opted_out or OptedOut()
    return Dispatcher(
        store,
        opt_outs,
        provider or RecordingProvider(),
        keys or NoKeys(),
        clock=clock,
        sleep=Sleeps(),
    ), messages


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


async def test_a_message_a_stopped_attempt_left_sending_is_sent_when_its_lease_runs_out() -> None:
    # Review item 2: the attempt stopped without a provider error (its lease is not given
    # up), the consumer's retry finds the lease live and acknowledges the event.
    clock = Clock()
    provider = Crashing(1)
    dispatcher, messages = wire(clock, provider=provider, keys=Keys())
    with pytest.raises(RuntimeError):
        await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    retried = await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    assert retried is SmsStatus.SENDING  # a live lease: this retry leaves it
    assert await dispatcher.run_due() == 0
    clock.advance(seconds=LEASE.total_seconds())
    assert await dispatcher.run_due() == 1  # due when the lease ran out: asked, then sent
    assert await dispatcher.run_due() == 0
    assert [m.id for m in provider.sent] == ["sms-1"]
    assert messages.docs["sms-1"]["status"] == "sent"


async def test_a_stale_resolution_does_not_reschedule_a_message_another_attempt_claimed() -> None:
    # Review item 5: B's start-up lists M (its lease given up), A's retry claims M and is
    # sending; B's question to the provider comes before A's send lands there.
    clock = Clock()
    down = RecordingProvider([ProviderUnavailableError("connection reset")] * 3)
    dispatcher, messages = wire(clock, provider=down, keys=Keys())
    with pytest.raises(ProviderUnavailableError):
        await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    assert messages.docs["sms-1"]["status"] == "sending"

    class ClaimedMeanwhile(RecordingProvider):
        async def find_sent(self, client_reference: str) -> str | None:
            taken = await messages.claim(client_reference, clock.now, from_status=SmsStatus.SENDING)
            assert taken is not None  # A's retry takes the next attempt
            return await super().find_sent(client_reference)

    other = Dispatcher(messages, OptedOut(), ClaimedMeanwhile(), Keys(), clock=clock)
    assert await other.resolve_in_sending() == 1
    doc = messages.docs["sms-1"]
    assert doc["status"] == "sending"  # A's attempt holds it: not put back in the schedule
    assert await other.run_due() == 0  # so nobody sends it a second time


async def test_a_holder_whose_lease_ran_out_moves_nothing_of_the_next_attempt() -> None:
    clock = Clock()
    provider = RecordingProvider([ProviderUnavailableError("timeout")] * 3)
    dispatcher, messages = wire(clock, provider=provider, keys=Keys())
    with pytest.raises(ProviderUnavailableError):
        await dispatcher.send_new(sms(), current_country="ID", time_zone=None, phone=PHONE)
    first = messages.docs["sms-1"]["claim_id"]
    taken = await messages.claim("sms-1", clock.now, from_status=SmsStatus.SENDING)
    assert taken is not None
    late = clock.now + timedelta(seconds=1)
    assert not await messages.note_attempt("sms-1", late, "slow", another=False, claim=first)
    assert not await messages.defer(
        "sms-1", late, "x", late, from_status=SmsStatus.SENDING, claim=first
    )
    assert messages.docs["sms-1"]["lease_until"] == clock.now + LEASE  # still the new one


async def test_messages_being_sent_count_toward_her_daily_limit() -> None:
    # Review item 8: three attempts under way (none recorded `sent` yet) are three sends.
    clock = Clock()
    dispatcher, messages = wire(clock, provider=Crashing(3))
    for n in range(1, 4):
        with pytest.raises(RuntimeError):
            await dispatcher.send_new(sms(n), current_country="ID", time_zone=None, phone=PHONE)
    status = await dispatcher.send_new(sms(4), current_country="ID", time_zone=None, phone=PHONE)
    assert status is SmsStatus.SCHEDULED
    assert messages.docs["sms-4"]["reason"] == "worker daily limit"


async def test_a_refused_or_deferred_attempt_stops_counting() -> None:
    clock = Clock()
    provider = RecordingProvider(
        [ProviderRejectedError("invalid number"), ProviderUnavailableError("busy", retry_after=60)]
    )
    dispatcher, messages = wire(clock, provider=provider)
    refused = await dispatcher.send_new(sms(1), current_country="ID", time_zone=None, phone=PHONE)
    deferred = await dispatcher.send_new(sms(2), current_country="ID", time_zone=None, phone=PHONE)
    assert (refused, deferred) == (SmsStatus.FAILED, SmsStatus.SCHEDULED)
    assert await messages.sent_times("hash-1", clock.now - timedelta(days=1)) == []


async def test_one_message_failing_in_a_pass_does_not_hold_up_the_others() -> None:
    clock = Clock()
    provider = Crashing(2)
    dispatcher, messages = wire(clock, provider=provider, keys=Keys())
    for n in (1, 2):
        with pytest.raises(RuntimeError):
            await dispatcher.send_new(sms(n), current_country="ID", time_zone=None, phone=PHONE)
    clock.advance(seconds=LEASE.total_seconds())
    provider.crashes = 1  # the first one dies again
    assert await dispatcher.run_due() == 1
    assert [d["status"] for d in messages.docs.values()] == ["sending", "sent"]
