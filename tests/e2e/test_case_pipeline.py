"""A case walks from an NGO's HTTP request, through Kafka, to a referral and an SMS.

Everything here is real: three service processes, the Kafka broker, the MongoDB-protocol
server. The test watches only what a user could see: the API, the topics, the SMS file.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from lintas_shared.envelope import from_kafka_record
from lintas_shared.events import ReferralOffered, parse_payload
from lintas_shared.topics import CASES, REFERRALS, dead_letter_topic

from tests.e2e.conftest import Stack
from tests.support.fixtures import EXAMPLE_CASE, example_case
from tests.support.kafka import collect, eventually, produce_raw
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def sms_lines(stack: Stack, reference: str) -> list[dict[str, object]]:
    if not stack.sms_outbox.exists():
        return []
    lines = [json.loads(line) for line in stack.sms_outbox.read_text().splitlines() if line]
    return [line for line in lines if line["case_reference"] == reference]


async def test_example_case_is_referred_and_the_worker_gets_one_sms(
    stack: Stack, servers: Servers
) -> None:
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post("/v1/cases", json=EXAMPLE_CASE, headers=headers)
        assert created.status_code == 201, created.text
        case = created.json()

        async def referred() -> dict[str, object] | None:
            body = (await client.get(f"/v1/cases/{case['id']}", headers=headers)).json()
            return body if body["status"] == "referred" else None

        view = await eventually(referred, timeout=60)
    assert isinstance(view, dict)
    referral = view["referral"]
    assert isinstance(referral, dict)
    assert referral["partner_organisation_id"] == "org-demo-legal-hk"
    assert referral["country"] == "HK"

    [sms] = await eventually(lambda: sms_lines(stack, case["reference"]), timeout=60)  # type: ignore[misc]
    assert sms["to"] == "+6281234567890"
    assert sms["encoding"] == "GSM-7"
    assert sms["segments"] == 1
    assert sms["template"] == "case_received"
    assert case["reference"] in str(sms["body"])
    assert "Kasus Anda" in str(sms["body"])  # Bahasa Indonesia, as she prefers
    for secret in ("12000", "HKD", "Majikan", "Contoh Pekerja"):
        assert secret not in str(sms["body"])

    [submitted] = await collect(
        servers.kafka_bootstrap, CASES, lambda r: r.key == case["id"].encode()
    )
    raw = (submitted.value or b"").decode()
    for secret in ("Contoh Pekerja", "6281234567890", "1994-05-17", "Lampung", "Gaji tiga"):
        assert secret not in raw, f"{secret!r} in clear in the Kafka record"

    [offer] = await collect(
        servers.kafka_bootstrap, REFERRALS, lambda r: r.key == case["id"].encode(), settle=2.0
    )
    payload = parse_payload(from_kafka_record(offer.value, offer.headers), ReferralOffered)
    assert payload.referral_id == referral["referral_id"]
    assert len(sms_lines(stack, case["reference"])) == 1

    # The NGO sees every service's part in one timeline, in order.
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:

        async def full_timeline() -> list[dict[str, str]] | None:
            body = (await client.get(f"/v1/cases/{case['id']}/timeline", headers=headers)).json()
            entries: list[dict[str, str]] = body["entries"]
            return entries if len(entries) >= 3 else None

        entries = await eventually(full_timeline, timeout=60)
    assert isinstance(entries, list)
    assert [e["type"] for e in entries] == [
        "org.lintas.case.submitted",
        "org.lintas.referral.offered",
        "org.lintas.notification.sms_sent",
    ] or [e["type"] for e in entries] == [
        "org.lintas.case.submitted",
        "org.lintas.notification.sms_sent",
        "org.lintas.referral.offered",
    ]
    assert entries[0]["source"] == "intake"
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)


async def test_poison_on_the_cases_topic_is_parked_and_the_next_case_flows(
    stack: Stack, servers: Servers
) -> None:
    poison_id = f"poison-{uuid.uuid4()}"
    await produce_raw(
        servers.kafka_bootstrap, CASES, b'{"half": ', key=b"poison", headers={"ce_id": poison_id}
    )
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post(
            "/v1/cases", headers=headers, json=example_case(external_ref=f"NGO-{uuid.uuid4()}")
        )
        assert created.status_code == 201
        case = created.json()

        async def referred() -> bool:
            body = (await client.get(f"/v1/cases/{case['id']}", headers=headers)).json()
            return bool(body["status"] == "referred")

        await eventually(referred, timeout=60)
    await eventually(lambda: sms_lines(stack, case["reference"]), timeout=60)

    # Both consumers of the cases topic (referral and notify) parked it, once each;
    # intake, reading that topic only for notify's SMS preference news, passed it over.
    parked = await collect(
        servers.kafka_bootstrap,
        dead_letter_topic(CASES),
        lambda r: r.headers.get("ce_id") == poison_id,
        count=2,
        settle=2.0,
    )
    assert sorted(r.headers["lintas_dlq_consumer"] for r in parked) == ["notify", "referral"]
    assert all(r.headers["lintas_dlq_reason"].startswith("malformed") for r in parked)


async def test_case_without_consent_for_the_destination_awaits_consent(stack: Stack) -> None:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    doc["consent"]["share_with_countries"] = ["SG"]
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        case = (await client.post("/v1/cases", json=doc, headers=headers)).json()

        async def waiting() -> dict[str, object] | None:
            body = (await client.get(f"/v1/cases/{case['id']}", headers=headers)).json()
            return body if body["status"] == "awaiting_consent" else None

        view = await eventually(waiting, timeout=60)
    assert isinstance(view, dict)
    assert view["status_reason"] == "consent does not cover sharing with HK"
    assert view["referral"] is None


async def test_logs_of_every_service_hold_no_personal_data(stack: Stack) -> None:
    # Runs after the cases above have flowed through all three services.
    for name, log in stack.logs.items():
        text = log.read_text()
        assert text, f"{name} wrote no log"
        for secret in ("Contoh Pekerja", "6281234567890", "1994-05-17", "Lampung Timur"):
            assert secret not in text, f"{secret!r} in {name} log"
