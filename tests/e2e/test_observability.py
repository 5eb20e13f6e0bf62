"""The operator's view of the running services: metrics, readiness, one trace per case.

A case submitted over HTTP must be followable by its trace id through every hop: the
Kafka records each service publishes for it, and the log lines referral and notify
write while handling it. The services' `/metrics` must parse and show the case's
journey in their counters, with no case id or personal data in any label.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from lintas_shared.events import CaseSubmitted, ReferralOffered, SmsSent
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.conftest import Stack
from tests.support.fixtures import example_case
from tests.support.kafka import SeenRecord, collect, eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e
#: The services that consume and publish events (the console only calls intake and
#: referral over HTTP; its readiness is tested with its pages).
EVENT_SERVICES = ("intake", "referral", "notify")


async def scrape(url: str) -> list[Sample]:
    """Every sample a service's /metrics shows (the text parser refuses a broken one)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def trace_of(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


def log_lines(path: Path, **match: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # e.g. a library writing to the terminal directly
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in match.items()):
            found.append(entry)
    return found


def sms_sent(stack: Stack, reference: str) -> bool:
    if not stack.sms_outbox.exists():
        return False
    return any(
        json.loads(line)["case_reference"] == reference
        for line in stack.sms_outbox.read_text().splitlines()
        if line
    )


async def test_every_service_is_ready_with_its_consumers_assigned(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in EVENT_SERVICES:
            response = await client.get(f"{stack.urls[name]}/readyz")
            assert response.status_code == 200, name
            assert response.json()["checks"] == {"store": True, "kafka": True, "consumers": True}


async def test_one_trace_id_follows_a_case_from_the_http_request_to_the_sms(
    stack: Stack, servers: Servers
) -> None:
    before = {name: await scrape(stack.urls[name]) for name in EVENT_SERVICES}
    trace_id = uuid.uuid4().hex
    caller = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post(
            "/v1/cases",
            json=example_case(external_ref=f"NGO-{uuid.uuid4()}"),
            headers={**headers, "traceparent": caller},
        )
        assert created.status_code == 201, created.text
        case = created.json()

        async def referred() -> bool:
            body = (await client.get(f"/v1/cases/{case['id']}", headers=headers)).json()
            return bool(body["status"] == "referred")

        await eventually(referred, timeout=60)
    await eventually(lambda: sms_sent(stack, case["reference"]), timeout=60)

    # On the wire: the case's event, the referral decision, and the SMS record.
    key = case["id"].encode()

    def of_type(type_: str) -> Any:
        return lambda r: r.key == key and r.headers.get("ce_type") == type_

    records: list[SeenRecord] = [
        *await collect(servers.kafka_bootstrap, CASES, of_type(CaseSubmitted.TYPE)),
        *await collect(servers.kafka_bootstrap, REFERRALS, of_type(ReferralOffered.TYPE)),
        *await collect(servers.kafka_bootstrap, NOTIFICATIONS, of_type(SmsSent.TYPE)),
    ]
    assert len(records) == 3
    for record in records:
        assert trace_of(record.headers.get("traceparent")) == trace_id, record.topic
        assert trace_of(record.headers.get("ce_traceparent")) == trace_id, record.topic
    # Each hop is a new span: the publishing services are not all the same parent.
    assert len({r.headers["traceparent"] for r in records}) == 3

    # In the logs: intake's request, referral's decision, notify's SMS, by case and trace.
    def traced(service: str, **match: str) -> list[dict[str, Any]]:
        return log_lines(stack.logs[service], case_id=case["id"], trace_id=trace_id, **match)

    await eventually(lambda: traced("notify", event="sms accepted by provider"), timeout=30)
    [request] = traced("intake", event="request handled")
    assert request["route"] == "/v1/cases"
    assert request["status"] == 201
    decided = traced("referral", event="event handled", event_type=CaseSubmitted.TYPE)
    assert [line["outcome"] for line in decided] == ["ok"]
    assert decided[0]["event_id"]
    notified = traced("notify", event="event handled", event_type=CaseSubmitted.TYPE)
    assert [line["outcome"] for line in notified] == ["ok"]

    # The counters moved where the case went.
    after = {name: await scrape(stack.urls[name]) for name in EVENT_SERVICES}

    def moved(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    assert (
        moved(
            "intake", "lintas_http_requests_total", method="POST", route="/v1/cases", status="201"
        )
        >= 1
    )
    assert (
        moved("intake", "lintas_events_published_total", topic=CASES, type=CaseSubmitted.TYPE) >= 1
    )
    consumed = {"topic": CASES, "type": CaseSubmitted.TYPE, "outcome": "ok"}
    assert moved("referral", "lintas_events_consumed_total", consumer="referral", **consumed) >= 1
    assert moved("notify", "lintas_events_consumed_total", consumer="notify", **consumed) >= 1
    assert (
        moved("referral", "lintas_event_handler_duration_seconds_count", type=CaseSubmitted.TYPE)
        >= 1
    )
    assert moved("referral", "lintas_events_published_total", type=ReferralOffered.TYPE) >= 1
    assert moved("notify", "lintas_sms_total", outcome="sent") >= 1
    assert moved("notify", "lintas_sms_provider_requests_total", result="accepted") >= 1
    assert moved("notify", "lintas_events_published_total", type=SmsSent.TYPE) >= 1

    # The gauges an operator watches are there, per partition and per collection.
    for service, samples in after.items():
        lags = [s for s in samples if s.name == "lintas_consumer_lag"]
        assert lags, f"{service} reports no consumer lag"
        assert all(s.labels["partition"].isdigit() for s in lags)
        assert total(samples, "lintas_consumer_assigned_partitions") >= 1, service
        assert [s for s in samples if s.name == "lintas_outbox_backlog"], service
        assert [s for s in samples if s.name == "lintas_outbox_oldest_age_seconds"], service
        labels = " ".join(v for s in samples for v in s.labels.values())
        for private in (case["id"], case["reference"], "6281234567890", "Contoh"):
            assert private not in labels, f"{private!r} in a {service} metric label"
