"""Prometheus metrics: consumer outcomes, HTTP by route template, the exposition itself."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from fastapi import APIRouter, FastAPI, Response
from lintas_shared.consumer import EventConsumer, PermanentEventError, RawRecord, RetryPolicy
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.events import CaseSubmitted
from lintas_shared.http import NATIVE_TELEMETRY_OFF, install_conventions
from lintas_shared.http_guard import HttpLimits
from lintas_shared.logging import configure_logging
from lintas_shared.tracing import configure_tracing
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pymongo.errors import AutoReconnect

from tests.support.fixtures import case_submitted
from tests.support.tracing import recording_spans

pytestmark = pytest.mark.unit

FAST = RetryPolicy(attempts=2, base_delay=0.0)
TOPIC = "lintas.cases.v1"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class NoDeadLetters:
    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: dict[str, str]
    ) -> None:
        return None


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def record_of(event: CloudEvent) -> RawRecord:
    r = to_kafka_record(event)
    return RawRecord(TOPIC, 0, 3, r.key, r.value, r.headers)


async def test_consumed_events_are_counted_by_type_and_outcome() -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    failures = {"flaky": 1, "broken": 99}

    async def handle(event: CloudEvent) -> None:
        kind = event.subject
        if kind == "rejected":
            raise PermanentEventError("no such case")
        if kind == "down":
            raise AutoReconnect("store unreachable")
        if failures.get(kind, 0) > 0:
            failures[kind] -= 1
            raise RuntimeError("bug")

    consumer = EventConsumer(name, {CaseSubmitted.TYPE: handle}, NoDeadLetters(), FAST)
    for subject in ("fine", "fine", "flaky", "rejected", "broken"):
        await consumer.consume(record_of(case_submitted(subject)))
    with pytest.raises(AutoReconnect):
        await consumer.consume(record_of(case_submitted("down")))
    await consumer.consume(RawRecord(TOPIC, 0, 9, b"k", b"{not json", {"ce_type": "evil"}))

    def consumed(type_: str, outcome: str) -> float:
        return value(
            "lintas_events_consumed_total", consumer=name, topic=TOPIC, type=type_, outcome=outcome
        )

    assert consumed(CaseSubmitted.TYPE, "ok") == 2
    assert consumed(CaseSubmitted.TYPE, "retried") == 1
    assert consumed(CaseSubmitted.TYPE, "dlq") == 2
    assert consumed(CaseSubmitted.TYPE, "redelivered") == 1
    # The untrusted ce_type of a malformed record never becomes a label.
    assert consumed("<malformed>", "dlq") == 1
    assert consumed("evil", "dlq") == 0
    dead = {
        reason: value("lintas_dead_letters_total", consumer=name, topic=TOPIC, reason=reason)
        for reason in ("malformed", "rejected", "failed")
    }
    assert dead == {"malformed": 1, "rejected": 1, "failed": 1}
    assert (
        value("lintas_event_handler_duration_seconds_count", consumer=name, type=CaseSubmitted.TYPE)
        == 6
    )


@pytest.fixture
async def app() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI(telemetry=NATIVE_TELEMETRY_OFF)
    ready = {"consumers": False}

    async def store() -> bool:
        return True

    async def consumers() -> bool:
        return ready["consumers"]

    install_conventions(app, {"store": store, "consumers": consumers}, HttpLimits())

    # Routes in an included router, as the services have them.
    router = APIRouter(prefix="/v1")

    @router.get("/probe-things/{case_id}")
    async def read(case_id: str) -> dict[str, str]:
        return {"id": case_id}

    @router.post("/probe-things", status_code=201)
    async def create(response: Response) -> dict[str, str]:
        response.headers["Location"] = "/v1/probe-things/case-created-77"
        return {"id": "case-created-77"}

    app.include_router(router)

    app.state.ready = ready
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def test_http_requests_are_counted_by_route_template_never_by_raw_path(
    app: httpx.AsyncClient,
) -> None:
    template = "/v1/probe-things/{case_id}"
    before = value("lintas_http_requests_total", method="GET", route=template, status="200")
    unmatched = value("lintas_http_requests_total", method="GET", route="<unmatched>", status="404")
    for case_id in ("case-secret-1", "case-secret-2"):
        assert (await app.get(f"/v1/probe-things/{case_id}")).status_code == 200
    assert (await app.get("/v1/no-such-route/case-secret-3")).status_code == 404

    exposition = (await app.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    assert value("lintas_http_requests_total", method="GET", route=template, status="200") == (
        before + 2
    )
    assert value("lintas_http_requests_total", method="GET", route="<unmatched>", status="404") == (
        unmatched + 1
    )
    assert "lintas_http_request_duration_seconds" in families
    labels = [
        label
        for family in families.values()
        for sample in family.samples
        for label in sample.labels.values()
    ]
    assert not [label for label in labels if "case-secret" in label]


async def test_readyz_names_each_check_and_fails_until_consumers_are_assigned(
    app: httpx.AsyncClient,
) -> None:
    first = await app.get("/readyz")
    assert first.status_code == 503
    assert first.json()["checks"] == {"store": True, "consumers": False}
    app.app.state.ready["consumers"] = True  # type: ignore[attr-defined]
    second = await app.get("/readyz")
    assert second.status_code == 200
    assert second.json() == {"status": "ready", "checks": {"store": True, "consumers": True}}


async def test_a_request_joins_the_callers_trace_and_its_log_line_names_the_created_case(
    app: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("test")
    try:
        configure_tracing("tests")  # as every service does when it starts
        created = await app.post(
            "/v1/probe-things", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        )
        read = await app.get("/v1/probe-things/case-read-5")
        await app.get("/metrics")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert created.status_code == 201
    assert read.status_code == 200
    assert created.headers["x-request-id"]
    handled = [line for line in lines if line["event"] == "request handled"]
    post, get = handled  # /metrics is counted, not logged
    assert post["route"] == "/v1/probe-things"
    assert post["status"] == 201
    assert post["case_id"] == "case-created-77"
    assert post["trace_id"] == TRACE_ID
    assert get["route"] == "/v1/probe-things/{case_id}"
    assert get["case_id"] == "case-read-5"
    assert get["trace_id"] != TRACE_ID  # no traceparent sent: a trace of its own


async def test_each_request_is_one_server_span_named_by_its_route_template(
    app: httpx.AsyncClient,
) -> None:
    with recording_spans() as exporter:
        await app.get("/v1/probe-things/case-read-6?reason=Siti%20called")
        await app.post("/v1/probe-things/case-read-6")  # no such method: 405
        await app.get("/healthz")
        spans = exporter.get_finished_spans()
    assert [(s.name, s.kind) for s in spans] == [
        ("GET /v1/probe-things/{case_id}", SpanKind.SERVER),
        ("POST /v1/probe-things/{case_id}", SpanKind.SERVER),
    ]
    for span in spans:
        text = json.dumps(dict(span.attributes or {}))
        assert "Siti" not in text  # no raw query string, no raw path
        assert "/v1/probe-things/case-read-6" not in text
    assert spans[0].attributes == {
        "http.request.method": "GET",
        "http.route": "/v1/probe-things/{case_id}",
        "http.response.status_code": 200,
        "lintas.case_id": "case-read-6",
    }
