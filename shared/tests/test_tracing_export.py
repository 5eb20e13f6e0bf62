"""The OTLP exporter, switched on by the standard environment variables, sends spans."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lintas_shared.tracing import build_tracer_provider
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

pytestmark = pytest.mark.integration

#: The port range this suite may use for servers of its own.
PORTS = range(23150, 23160)


class Collector(ThreadingHTTPServer):
    """A minimal OTLP/HTTP receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.received.append((self.path, self.headers.get("content-type", ""), body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        for port in PORTS:
            try:
                super().__init__(("127.0.0.1", port), Handler)
                return
            except OSError:
                continue
        raise RuntimeError(f"no free port in {PORTS}")


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_otlp_endpoint_in_the_environment_sends_spans_there(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    provider = build_tracer_provider("intake")
    try:
        with provider.get_tracer("t").start_as_current_span("POST /v1/cases"):
            pass
        assert provider.force_flush()
    finally:
        provider.shutdown()
    [(path, content_type, body)] = collector.received
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == "lintas-intake"
    assert attributes["deployment.environment"] == "test"
    [scope] = resource_spans.scope_spans
    assert [span.name for span in scope.spans] == ["POST /v1/cases"]


def test_otel_traces_exporter_none_keeps_spans_home_even_with_an_endpoint(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    provider = build_tracer_provider("intake")
    try:
        with provider.get_tracer("t").start_as_current_span("POST /v1/cases") as span:
            assert span.get_span_context().is_valid  # context still propagates
        provider.force_flush()
    finally:
        provider.shutdown()
    assert collector.received == []
    assert provider.resource.attributes["service.name"] == "renamed"
