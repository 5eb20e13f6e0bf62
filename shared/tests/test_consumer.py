"""EventConsumer: malformed and rejected events are parked, transient failures retried."""

from __future__ import annotations

import pytest
from lintas_shared.consumer import (
    DLQ_CONSUMER,
    DLQ_KEPT_BYTES,
    DLQ_ORIGINAL_SIZE,
    DLQ_REASON,
    DLQ_SOURCE_OFFSET,
    EventConsumer,
    Lead,
    PermanentEventError,
    RawRecord,
    RetryPolicy,
    wait_for_lead,
)
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.events import CaseSubmitted
from pymongo.errors import AutoReconnect

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.unit

FAST = RetryPolicy(attempts=3, base_delay=0.0)


class DeadLetters:
    def __init__(self) -> None:
        self.parked: list[tuple[str, bytes | None, bytes | None, dict[str, str]]] = []

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        self.parked.append((topic, key, value, headers))


def record_of(event: CloudEvent, offset: int = 7) -> RawRecord:
    r = to_kafka_record(event)
    return RawRecord("lintas.cases.v1", 0, offset, r.key, r.value, r.headers)


async def test_good_event_reaches_its_handler() -> None:
    seen: list[CloudEvent] = []

    async def handle(event: CloudEvent) -> None:
        seen.append(event)

    dlq = DeadLetters()
    event = case_submitted()
    await EventConsumer("t", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(record_of(event))
    assert seen == [event]
    assert dlq.parked == []


async def test_malformed_record_is_parked_with_reason_and_original_bytes() -> None:
    async def handle(event: CloudEvent) -> None:
        raise AssertionError("must not be called")

    dlq = DeadLetters()
    record = RawRecord("lintas.cases.v1", 2, 41, b"k", b"{not json", {"ce_id": "x"})
    await EventConsumer("svc", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(record)
    [(topic, key, value, headers)] = dlq.parked
    assert topic == "lintas.cases.v1.dlq"
    assert (key, value) == (b"k", b"{not json")
    assert headers["ce_id"] == "x"
    assert headers[DLQ_REASON].startswith("malformed: missing CloudEvents headers")
    assert headers[DLQ_SOURCE_OFFSET] == "41"
    assert headers[DLQ_CONSUMER] == "svc"


async def test_a_record_too_big_to_produce_is_parked_as_a_truncated_copy() -> None:
    async def handle(event: CloudEvent) -> None:
        raise AssertionError("must not be called")

    dlq = DeadLetters()
    huge = b"x" * 2_000_000  # over the producer's limit: parked whole, it would never go
    record = RawRecord("lintas.cases.v1", 0, 9, b"k", huge, {})
    await EventConsumer("svc", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(record)
    [(_, _, value, headers)] = dlq.parked
    assert value == huge[:DLQ_KEPT_BYTES]
    assert headers[DLQ_ORIGINAL_SIZE] == "2000000"
    assert headers[DLQ_REASON].startswith("malformed")


async def test_a_small_record_is_parked_whole_without_a_size_note() -> None:
    dlq = DeadLetters()
    record = RawRecord("lintas.cases.v1", 0, 9, b"k", b"{}", {})
    await EventConsumer("svc", {}, dlq, FAST).consume(record)
    [(_, _, value, headers)] = dlq.parked
    assert value == b"{}"
    assert DLQ_ORIGINAL_SIZE not in headers


async def test_permanent_error_is_parked_without_retry() -> None:
    calls = 0

    async def handle(event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        raise PermanentEventError("no such case")

    dlq = DeadLetters()
    await EventConsumer("t", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(
        record_of(case_submitted())
    )
    assert calls == 1
    assert "no such case" in dlq.parked[0][3][DLQ_REASON]


async def test_flaky_handler_is_retried_then_succeeds() -> None:
    calls = 0

    async def handle(event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("flaky")

    dlq = DeadLetters()
    await EventConsumer("t", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(
        record_of(case_submitted())
    )
    assert calls == 3
    assert dlq.parked == []


async def test_handler_failing_every_time_is_parked_after_the_budget() -> None:
    calls = 0

    async def handle(event: CloudEvent) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    dlq = DeadLetters()
    await EventConsumer("t", {CaseSubmitted.TYPE: handle}, dlq, FAST).consume(
        record_of(case_submitted())
    )
    assert calls == FAST.attempts
    assert "failed after 3 attempts: ValueError: bug" in dlq.parked[0][3][DLQ_REASON]


async def test_store_outage_propagates_for_redelivery_and_parks_nothing() -> None:
    async def handle(event: CloudEvent) -> None:
        raise AutoReconnect("store down")

    dlq = DeadLetters()
    consumer = EventConsumer("t", {CaseSubmitted.TYPE: handle}, dlq, FAST)
    with pytest.raises(AutoReconnect):
        await consumer.consume(record_of(case_submitted()))
    assert dlq.parked == []


async def test_event_types_it_does_not_handle_are_ignored() -> None:
    dlq = DeadLetters()
    await EventConsumer("t", {}, dlq, FAST).consume(record_of(case_submitted()))
    assert dlq.parked == []


async def test_a_batch_keeps_each_keys_order_and_runs_different_keys_side_by_side() -> None:
    import asyncio

    running: set[str] = set()
    most_at_once = 0
    seen: list[tuple[str, str]] = []

    async def handle(event: CloudEvent) -> None:
        nonlocal most_at_once
        running.add(event.subject)
        most_at_once = max(most_at_once, len(running))
        await asyncio.sleep(0.01)
        running.discard(event.subject)
        seen.append((event.subject, event.id))

    events = [case_submitted(f"case-{n % 3}") for n in range(9)]
    records = [record_of(e, offset=n) for n, e in enumerate(events)]
    consumer = EventConsumer("t", {CaseSubmitted.TYPE: handle}, DeadLetters(), FAST)
    await consumer.consume_batch(records, concurrency=3)

    assert most_at_once == 3
    for case in ("case-0", "case-1", "case-2"):
        assert [i for s, i in seen if s == case] == [e.id for e in events if e.subject == case]


async def test_a_batch_with_a_failing_key_raises_after_the_other_keys_are_handled() -> None:
    seen: list[str] = []

    async def handle(event: CloudEvent) -> None:
        if event.subject == "case-down":
            raise AutoReconnect("store down")
        seen.append(event.subject)

    records = [record_of(case_submitted(s), n) for n, s in enumerate(["case-down", "case-up"])]
    consumer = EventConsumer("t", {CaseSubmitted.TYPE: handle}, DeadLetters(), FAST)
    with pytest.raises(AutoReconnect):
        await consumer.consume_batch(records)
    assert seen == ["case-up"]


OTHER = "org.lintas.test.other"
UNHANDLED = "org.lintas.test.unhandled"


def retyped(event: CloudEvent, type_: str) -> CloudEvent:
    return event.model_copy(update={"type": type_, "id": f"{event.id}-{type_}"})


class Together:
    """A chain handler and per-event handlers that record what reached them."""

    def __init__(self, *, chain_fails: bool = False) -> None:
        self.chains: list[list[str]] = []
        self.one_by_one: list[str] = []
        self.chain_fails = chain_fails

    async def chain(self, events: object) -> None:
        assert isinstance(events, list)
        self.chains.append([e.id for e in events])
        if self.chain_fails:
            raise RuntimeError("version conflict, say")

    async def one(self, event: CloudEvent) -> None:
        self.one_by_one.append(event.id)

    def consumer(self, dlq: DeadLetters | None = None) -> EventConsumer:
        return EventConsumer(
            "t",
            {CaseSubmitted.TYPE: self.one, OTHER: self.one},
            dlq or DeadLetters(),
            FAST,
            chain=self.chain,
            chain_types=[CaseSubmitted.TYPE],
        )


async def test_a_keys_events_of_the_chain_types_go_to_the_chain_handler_together() -> None:
    first, second = case_submitted("case-1"), case_submitted("case-1")
    passed_over = retyped(case_submitted("case-1"), UNHANDLED)
    alone = case_submitted("case-2")
    records = [record_of(e, n) for n, e in enumerate([first, passed_over, alone, second])]
    together = Together()
    await together.consumer().consume_batch(records)
    assert together.chains == [[first.id, second.id]]  # in offset order
    assert together.one_by_one == [alone.id]  # a key's only event: its handler


async def test_a_chain_with_an_event_of_another_type_goes_one_by_one() -> None:
    first = case_submitted("case-1")
    other = retyped(case_submitted("case-1"), OTHER)
    together = Together()
    await together.consumer().consume_batch([record_of(first, 1), record_of(other, 2)])
    assert together.chains == []
    assert together.one_by_one == [first.id, other.id]


async def test_a_chain_handler_that_fails_hands_each_event_to_its_handler() -> None:
    first, second = case_submitted("case-1"), case_submitted("case-1")
    together = Together(chain_fails=True)
    dlq = DeadLetters()
    await together.consumer(dlq).consume_batch([record_of(first, 1), record_of(second, 2)])
    assert together.chains == [[first.id, second.id]]
    assert together.one_by_one == [first.id, second.id]
    assert dlq.parked == []


async def test_a_malformed_record_in_a_chain_is_parked_and_the_rest_handled_one_by_one() -> None:
    first = case_submitted("case-1")
    good = record_of(first, 1)
    broken = RawRecord(good.topic, 0, 2, good.key, b"{not json", good.headers)
    together = Together()
    dlq = DeadLetters()
    await together.consumer(dlq).consume_batch([good, broken])
    assert together.chains == []
    assert together.one_by_one == [first.id]
    assert [headers[DLQ_SOURCE_OFFSET] for *_, headers in dlq.parked] == ["2"]


async def test_a_consumer_of_several_topics_takes_from_each_only_its_types() -> None:
    seen: list[str] = []

    async def handle(event: CloudEvent) -> None:
        seen.append(event.id)

    consumer = EventConsumer("t", {CaseSubmitted.TYPE: handle}, DeadLetters(), FAST)
    consumer.take_from("lintas.cases.v1", [CaseSubmitted.TYPE])
    consumer.take_from("lintas.referrals.v1", [])
    on_cases, on_referrals = case_submitted("case-1"), case_submitted("case-2")
    elsewhere = record_of(on_referrals)
    await consumer.consume(record_of(on_cases))
    await consumer.consume(RawRecord("lintas.referrals.v1", 0, 1, *_rest(elsewhere)))
    assert seen == [on_cases.id]


def _rest(record: RawRecord) -> tuple[bytes | None, bytes | None, dict[str, str]]:
    return record.key, record.value, record.headers


# --- waiting for a lead group ------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_batch_waits_until_the_lead_group_is_within_its_backlog() -> None:
    clock = ManualClock()
    left = iter([900, 600, 350, 200, 0])
    waited = await wait_for_lead(
        Lead("lead", records=200, poll=0.25), lambda: next(left), clock=clock, sleep=clock.sleep
    )
    assert clock.slept == [0.25, 0.25, 0.25]
    assert waited == 0.75


async def test_a_batch_does_not_wait_when_the_lead_group_is_not_behind() -> None:
    clock = ManualClock()
    waited = await wait_for_lead(Lead("lead"), lambda: 200, clock=clock, sleep=clock.sleep)
    assert (waited, clock.slept) == (0.0, [])


async def test_a_batch_waits_at_most_the_longest_wait_however_far_behind_the_lead_is() -> None:
    clock = ManualClock()
    waited = await wait_for_lead(
        Lead("lead", records=10, longest=1.0, poll=0.4),
        lambda: 10_000,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.slept == [0.4, 0.4, pytest.approx(0.2)]
    assert waited == pytest.approx(1.0)
