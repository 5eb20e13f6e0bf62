"""OpenTelemetry tracing: one trace from an NGO's HTTP request to the worker's SMS.

How the context travels:
- the HTTP middleware (`lintas_shared.http`) starts a server span per request, joining
  a W3C `traceparent` the caller sent, if any;
- an event created while a span is active captures that span's context in its
  `traceparent` attribute (`lintas_shared.envelope.new_event`), so the context rides in
  the outbox entry and survives until the relay publishes it, possibly much later;
- the relay publishes inside a producer span, child of the captured context; the Kafka
  record carries the captured context in `ce_traceparent` (the CloudEvents distributed
  tracing extension) and the producer span in the W3C `traceparent` header;
- a consumer starts its span as a child of the record's `traceparent` (falling back to
  `ce_traceparent`), and the events its handler creates capture that consumer span.

Exporting is off by default: no exporter, no network. `OTEL_TRACES_EXPORTER=otlp` (or
`console`), or an `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
switches it on; the exporter then reads the other standard `OTEL_*` variables itself.
When off, spans are not recorded at all (a recorded span costs several times more CPU,
for nothing), but each still gets its own ids under its parent's trace, so context
propagation, the trace ids in logs and the Kafka headers work the same either way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lintas_shared.logging import get_logger

log = get_logger(__name__)

TRACER_NAME: Final = "lintas"
#: The W3C header (Kafka transport and HTTP) and the CloudEvents extension's header.
TRACEPARENT_HEADER: Final = "traceparent"
CE_TRACEPARENT_HEADER: Final = "ce_traceparent"
#: version 00, 32 hex trace id, 16 hex parent id, 2 hex flags (W3C Trace Context).
_TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# W3C only, whatever OTEL_PROPAGATORS says: traceparent is part of the event contract.
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_EXPORTERS: Final = frozenset({"otlp", "console", "none"})

_IDS: Final = RandomIdGenerator()


class _PropagatingTracer(trace.NoOpTracer):
    """Spans that record nothing but carry fresh ids: a child of the parent's trace (its
    flags kept), or the root of a new sampled trace."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        """A non-recording span with its own span id."""
        parent = trace.get_current_span(context).get_span_context()
        span_id = _IDS.generate_span_id()
        if parent.is_valid:
            own = SpanContext(
                parent.trace_id,
                span_id,
                is_remote=False,
                trace_flags=parent.trace_flags,
                trace_state=parent.trace_state,
            )
        else:
            own = SpanContext(
                _IDS.generate_trace_id(),
                span_id,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        return NonRecordingSpan(own)


_PROPAGATING_TRACER: Final = _PropagatingTracer()


class PropagatingTracerProvider(trace.NoOpTracerProvider):
    """The provider when nothing is exported: context propagation without recording."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Tracer:
        return _PROPAGATING_TRACER


class _ProcessTracerProvider(trace.TracerProvider):
    """The provider installed for the process; it hands out its delegate's tracers, so
    that `install` can switch where spans go after the global provider is set (once)."""

    def __init__(self, delegate: trace.TracerProvider) -> None:
        self.delegate = delegate

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> Tracer:
        return self.delegate.get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )


_process_provider: _ProcessTracerProvider | None = None


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it is a well-formed W3C traceparent (all-zero ids refused), else None."""
    if not value or not _TRACEPARENT.match(value):
        return None
    _version, trace_id, span_id, _flags = value.split("-")
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return value


def selected_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The span exporters the environment asks for; none unless asked (off by default).

    `OTEL_TRACES_EXPORTER` names them (comma-separated; `none` for none); without it, an
    OTLP endpoint variable alone selects `otlp`. Unknown names are ignored with a warning.
    """
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not named:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ("otlp",) if endpoint else ()
    chosen: list[str] = []
    for name in (n.strip().lower() for n in named.split(",")):
        if name not in _EXPORTERS:
            log.warning("unknown OTEL_TRACES_EXPORTER ignored", exporter=name)
        elif name != "none" and name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported only when asked for: it pulls in requests and protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, TLS: from OTEL_* variables


def build_tracer_provider(service: str) -> TracerProvider:
    """A tracer provider for `service` with the exporters the environment selects.

    `service.name` defaults to `lintas-<service>`; `OTEL_SERVICE_NAME` and
    `OTEL_RESOURCE_ATTRIBUTES` override it. The sampler follows `OTEL_TRACES_SAMPLER`
    (default: parent-based, always on).
    """
    # The environment's attributes last, so that they win over our default name.
    resource = Resource.create({SERVICE_NAME: f"lintas-{service}"}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)
    for name in selected_exporters(os.environ):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def configure_tracing(service: str) -> None:
    """Install this process's tracer provider once (later calls keep the first one):
    the SDK with the selected exporters, or, when none is, propagation only.

    Leaves alone a provider someone else installed (an auto-instrumentation agent):
    spans then go wherever that provider sends them.
    """
    global _process_provider
    if _process_provider is not None:
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    exporters = selected_exporters(os.environ)
    sdk_disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    delegate: trace.TracerProvider = (
        build_tracer_provider(service)
        if exporters and not sdk_disabled
        else PropagatingTracerProvider()
    )
    _process_provider = _ProcessTracerProvider(delegate)
    trace.set_tracer_provider(_process_provider)
    log.info("tracing configured", exporters=list(exporters) or ["none"])


def install(provider: trace.TracerProvider) -> trace.TracerProvider:
    """Send this process's spans to `provider` from now on (a test recording spans in
    memory, an application embedding a service); returns the provider it replaces.
    `configure_tracing` must have run."""
    if _process_provider is None:
        raise RuntimeError("configure_tracing() has not run in this process")
    previous, _process_provider.delegate = _process_provider.delegate, provider
    return previous


def tracer() -> Tracer:
    """The tracer Lintas code uses (a proxy until a provider is installed)."""
    return trace.get_tracer(TRACER_NAME)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span, or None when no valid span is active."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT_HEADER)


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """An OpenTelemetry context whose parent is `traceparent`; None if it is not valid."""
    value = valid_traceparent(traceparent)
    if value is None:
        return None
    return _PROPAGATOR.extract({TRACEPARENT_HEADER: value})


def record_parent(headers: Mapping[str, str]) -> Context | None:
    """The parent context of a Kafka record: its W3C `traceparent` (the producer's span),
    else the event's own `ce_traceparent`; None (a new trace) when neither is valid."""
    return context_from_traceparent(headers.get(TRACEPARENT_HEADER)) or context_from_traceparent(
        headers.get(CE_TRACEPARENT_HEADER)
    )


@contextmanager
def producer_span(
    topic: str, event_type: str, event_id: str, traceparent: str | None
) -> Iterator[Span]:
    """A span around publishing one event, child of the context the event captured."""
    with tracer().start_as_current_span(
        f"send {topic}",
        context=context_from_traceparent(traceparent),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": event_id,
            "cloudevents.event_type": event_type,
        },
    ) as span:
        yield span


@contextmanager
def consumer_span(
    tracer_: Tracer,
    *,
    topic: str,
    partition: int,
    offset: int,
    group: str,
    headers: Mapping[str, str],
) -> Iterator[Span]:
    """A span around processing one record, child of the record's trace context (a new
    trace without one, whatever span is current: records handled together each keep
    their own)."""
    with tracer_.start_as_current_span(
        f"process {topic}",
        context=record_parent(headers) or Context(),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.consumer.group.name": group,
        },
    ) as span:
        yield span


def mark_error(span: Span, description: str) -> None:
    """Set a span's status to error with a short, data-free description."""
    span.set_status(Status(StatusCode.ERROR, description[:200]))
