"""Recording the spans the process's own tracer makes (the relay, the HTTP middleware)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lintas_shared.tracing import configure_tracing
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _Recorder(SpanProcessor):
    """Keeps finished spans while a test records; ignores them otherwise."""

    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.exporter is not None:
            self.exporter.export([span])


_recorder: _Recorder | None = None


@contextmanager
def recording_spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of the process's tracer provider while the block runs.

    The provider is the one the services install (`configure_tracing`); a provider can be
    set only once per process, so the recorder is attached once and switched per test.
    """
    global _recorder
    configure_tracing("tests")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is installed"
    if _recorder is None:
        _recorder = _Recorder()
        provider.add_span_processor(_recorder)
    exporter = InMemorySpanExporter()
    _recorder.exporter = exporter
    try:
        yield exporter
    finally:
        _recorder.exporter = None
