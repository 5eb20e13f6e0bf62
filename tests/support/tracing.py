"""Recording the spans the process's own tracer makes (the relay, the HTTP middleware)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lintas_shared.tracing import configure_tracing, install
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextmanager
def recording_spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process's tracer finishes while the block runs, kept in memory.

    The process's provider is the one the services install (`configure_tracing`, with
    export off: nothing recorded); for the block, spans go to an SDK provider instead.
    """
    configure_tracing("tests")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = install(provider)
    try:
        yield exporter
    finally:
        install(previous)
        provider.shutdown()
