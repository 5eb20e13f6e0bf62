"""Trace context: captured by new events, carried in Kafka headers, parent of consumer spans."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from lintas_shared.consumer import EventConsumer, PermanentEventError, RawRecord, RetryPolicy
from lintas_shared.envelope import CloudEvent, from_kafka_record, new_event, to_kafka_record
from lintas_shared.events import CaseSubmitted
from lintas_shared.logging import configure_logging, get_logger
from lintas_shared.tracing import (
    CE_TRACEPARENT_HEADER,
    TRACEPARENT_HEADER,
    PropagatingTracerProvider,
    current_traceparent,
    producer_span,
    record_parent,
    selected_exporters,
    valid_traceparent,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer, format_span_id, format_trace_id

from tests.support.fixtures import case_submitted
from tests.support.tracing import recording_spans

pytestmark = pytest.mark.unit

FAST = RetryPolicy(attempts=2, base_delay=0.0)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE_ID}-{PARENT_ID}-01"
CREATED_ID = "1111111111111111"
CREATED = f"00-{TRACE_ID}-{CREATED_ID}-01"


class NoDeadLetters:
    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        return None


@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """A tracer of its own that keeps finished spans in memory (no global provider)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def record(event: CloudEvent, **headers: str | None) -> RawRecord:
    r = to_kafka_record(event)
    merged = {**r.headers, **headers}
    return RawRecord(
        "lintas.cases.v1", 2, 41, r.key, r.value, {k: v for k, v in merged.items() if v}
    )


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


async def test_the_consumer_span_is_a_child_of_the_record_traceparent_and_the_handler_events_of_it(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    created: list[CloudEvent] = []

    async def handle(event: CloudEvent) -> None:
        created.append(new_event(source="/t", type_="t.done", subject=event.subject, data={}))

    event = case_submitted("case-7")
    consumer = EventConsumer(
        "t", {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST, tracer_=tracer
    )
    await consumer.consume(record(event, traceparent=INCOMING))

    span = only(exporter)
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None
    assert format_trace_id(span.context.trace_id) == TRACE_ID
    assert format_span_id(span.parent.span_id) == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["cloudevents.event_type"] == CaseSubmitted.TYPE
    assert span.attributes["messaging.message.id"] == event.id
    assert span.attributes["messaging.destination.partition.id"] == "2"
    # What the handler caused belongs to the same trace, under the consumer span.
    [follow_up] = created
    assert follow_up.traceparent == (f"00-{TRACE_ID}-{format_span_id(span.context.span_id)}-01")


async def test_the_w3c_header_wins_and_ce_traceparent_is_the_fallback(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans

    async def handle(event: CloudEvent) -> None:
        return None

    consumer = EventConsumer(
        "t", {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST, tracer_=tracer
    )
    # The relay's producer span in `traceparent`, the creation context in ce_traceparent.
    await consumer.consume(record(case_submitted(), traceparent=INCOMING, ce_traceparent=CREATED))
    await consumer.consume(record(case_submitted(), traceparent=None, ce_traceparent=CREATED))
    first, second = exporter.get_finished_spans()
    assert first.parent is not None
    assert second.parent is not None
    assert format_span_id(first.parent.span_id) == PARENT_ID
    assert format_span_id(second.parent.span_id) == CREATED_ID


async def test_a_broken_traceparent_starts_a_new_trace_and_costs_no_event(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    handled: list[CloudEvent] = []

    async def handle(event: CloudEvent) -> None:
        handled.append(event)

    consumer = EventConsumer(
        "t", {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST, tracer_=tracer
    )
    await consumer.consume(
        record(case_submitted(), traceparent="00-nothex-00-01", ce_traceparent="garbage")
    )
    [event] = handled
    assert event.traceparent is None
    span = only(exporter)
    assert span.parent is None
    assert format_trace_id(span.context.trace_id) != TRACE_ID


async def test_a_parked_event_leaves_an_error_span(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans

    async def handle(event: CloudEvent) -> None:
        raise PermanentEventError("no such case")

    consumer = EventConsumer(
        "t", {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST, tracer_=tracer
    )
    await consumer.consume(record(case_submitted(), traceparent=INCOMING))
    span = only(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert format_trace_id(span.context.trace_id) == TRACE_ID


def test_an_event_captures_the_active_span_else_keeps_the_given_context(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = spans
    assert current_traceparent() is None
    outside = new_event(source="/t", type_="t", subject="case-1", data={}, traceparent=CREATED)
    assert outside.traceparent == CREATED
    broken = new_event(source="/t", type_="t", subject="case-1", data={}, traceparent="x")
    assert broken.traceparent is None
    with tracer.start_as_current_span("request") as span:
        inside = new_event(source="/t", type_="t", subject="case-1", data={}, traceparent=CREATED)
    expected = f"00-{format_trace_id(span.get_span_context().trace_id)}-"
    assert inside.traceparent is not None
    assert inside.traceparent.startswith(expected)


def test_the_record_carries_the_created_context_in_both_headers_and_reads_it_back() -> None:
    event = new_event(source="/t", type_="t", subject="case-1", data={}, traceparent=CREATED)
    headers = to_kafka_record(event).headers
    assert headers[CE_TRACEPARENT_HEADER] == CREATED
    assert headers[TRACEPARENT_HEADER] == CREATED
    # A producer span replaces the transport header; the event keeps its own context.
    replaced = {**headers, TRACEPARENT_HEADER: INCOMING}
    assert from_kafka_record(to_kafka_record(event).value, replaced).traceparent == CREATED
    untraced = new_event(source="/t", type_="t", subject="case-1", data={})
    assert CE_TRACEPARENT_HEADER not in to_kafka_record(untraced).headers
    assert TRACEPARENT_HEADER not in to_kafka_record(untraced).headers


def test_the_producer_span_is_a_child_of_the_context_the_event_captured() -> None:
    with recording_spans() as exporter:
        with producer_span("lintas.cases.v1", "t.happened", "e-1", CREATED):
            active = current_traceparent()
        span = only(exporter)
    assert span.kind is SpanKind.PRODUCER
    assert span.parent is not None
    assert format_span_id(span.parent.span_id) == CREATED_ID
    # What the publisher puts in the W3C header while the span is active.
    assert active == f"00-{TRACE_ID}-{format_span_id(span.context.span_id)}-01"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console, otlp, zipkin"}, ("console", "otlp")),
    ],
)
def test_exporting_is_off_unless_the_environment_asks(
    environ: dict[str, str], expected: tuple[str, ...]
) -> None:
    assert selected_exporters(environ) == expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (INCOMING, True),
        ("00-" + "0" * 32 + "-" + PARENT_ID + "-01", False),
        (f"00-{TRACE_ID}-{'0' * 16}-01", False),
        (f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", False),
        ("", False),
        (None, False),
    ],
)
def test_traceparent_shape(value: str | None, valid: bool) -> None:
    assert (valid_traceparent(value) is not None) is valid


async def test_log_lines_in_a_consumer_carry_trace_case_and_event_ids(
    spans: tuple[Tracer, InMemorySpanExporter], capsys: pytest.CaptureFixture[str]
) -> None:
    tracer, exporter = spans

    async def handle(event: CloudEvent) -> None:
        get_logger("t").info("doing the work")

    configure_logging("test")
    try:
        event = case_submitted("case-31")
        consumer = EventConsumer(
            "t", {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST, tracer_=tracer
        )
        await consumer.consume(record(event, traceparent=INCOMING))
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    span_id = format_span_id(only(exporter).context.span_id)
    work, handled = (line for line in lines if line["event"] in ("doing the work", "event handled"))
    for line in (work, handled):
        assert line["trace_id"] == TRACE_ID
        assert line["span_id"] == span_id
        assert line["case_id"] == "case-31"
        assert line["event_id"] == event.id
    assert handled["outcome"] == "ok"


def test_with_export_off_spans_record_nothing_but_still_propagate() -> None:
    tracer = PropagatingTracerProvider().get_tracer("t")
    parent = record(case_submitted(), traceparent=INCOMING).headers
    with tracer.start_as_current_span("process", context=record_parent(parent)) as child:
        inside = current_traceparent()
        with tracer.start_as_current_span("sms send") as grandchild:
            deeper = current_traceparent()
    assert not child.is_recording()
    assert inside is not None
    assert deeper is not None
    assert inside.split("-")[1] == deeper.split("-")[1] == TRACE_ID
    assert len({PARENT_ID, inside.split("-")[2], deeper.split("-")[2]}) == 3  # own ids
    assert grandchild.get_span_context().trace_flags.sampled
    with tracer.start_as_current_span("request") as root:
        assert root.get_span_context().is_valid
        assert format_trace_id(root.get_span_context().trace_id) != TRACE_ID
        assert root.get_span_context().trace_flags.sampled  # a new trace, sampled


async def test_records_handled_together_each_keep_their_own_trace_and_log_line(
    spans: tuple[Tracer, InMemorySpanExporter], capsys: pytest.CaptureFixture[str]
) -> None:
    tracer, exporter = spans

    async def together(events: object) -> None:
        return None

    async def one(event: CloudEvent) -> None:
        raise AssertionError("handled together, not one by one")

    first, second = case_submitted("case-32"), case_submitted("case-32")
    traced = record(first, traceparent=INCOMING)
    untraced = record(second, traceparent=None, ce_traceparent=None)
    consumer = EventConsumer(
        "t",
        {CaseSubmitted.TYPE: one},
        NoDeadLetters(),
        FAST,
        tracer_=tracer,
        chain=together,
        chain_types=[CaseSubmitted.TYPE],
    )
    configure_logging("test")
    try:
        await consumer.consume_batch([traced, untraced])
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    by_event = {
        (s.attributes or {})["messaging.message.id"]: s for s in exporter.get_finished_spans()
    }
    assert set(by_event) == {first.id, second.id}
    assert format_trace_id(by_event[first.id].context.trace_id) == TRACE_ID
    assert by_event[second.id].parent is None  # a trace of its own, not the first's
    assert by_event[second.id].context.trace_id != by_event[first.id].context.trace_id
    handled = {line["event_id"]: line for line in lines if line["event"] == "event handled"}
    for event in (first, second):
        span = by_event[event.id]
        assert handled[event.id]["trace_id"] == format_trace_id(span.context.trace_id)
        assert handled[event.id]["span_id"] == format_span_id(span.context.span_id)
        assert handled[event.id]["together"] == 2
