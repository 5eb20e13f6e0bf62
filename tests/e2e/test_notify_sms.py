"""The worker's SMS end to end: notify as a real process, events on the real broker,
the provider's webhooks over HTTP with the demo token, the SMS file as her phone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from lintas_shared.crypto import phone_lookup_hash
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.mongo import make_mongo_client
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS

from tests.e2e.conftest import Stack
from tests.support.fixtures import PHONE_HASH_SECRET, example_case
from tests.support.kafka import SeenRecord, collect, eventually, produce_raw
from tests.support.notify import deadline_approaching, referral_accepted
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def phone_lines(stack: Stack, to: str) -> list[dict[str, Any]]:
    if not stack.sms_outbox.exists():
        return []
    lines = [json.loads(line) for line in stack.sms_outbox.read_text().splitlines() if line]
    return [line for line in lines if line["to"] == to]


async def publish(servers: Servers, event: CloudEvent) -> None:
    record = to_kafka_record(event)
    await produce_raw(
        servers.kafka_bootstrap, REFERRALS, record.value, key=record.key, headers=record.headers
    )


async def submit_case(stack: Stack, phone: str) -> dict[str, Any]:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    doc["worker"]["phone"] = phone
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post(
            "/v1/cases", json=doc, headers={"X-API-Key": stack.keys["ngo_id"]}
        )
    assert created.status_code == 201, created.text
    case: dict[str, Any] = created.json()
    return case


def unique_phone() -> str:
    return "+62812" + str(uuid.uuid4().int)[:7]


async def offered(stack: Stack, case: dict[str, Any]) -> None:
    """Wait until referral's offer of the case is on the referrals topic (intake shows the
    case referred): a partner's answer published before it would precede the offer it
    answers, and notify rightly keeps the later of two stages."""
    headers = {"X-API-Key": stack.keys["ngo_id"]}
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:

        async def referred() -> bool:
            body = (await client.get(f"/v1/cases/{case['id']}", headers=headers)).json()
            return bool(body["status"] == "referred")

        await eventually(referred, timeout=120)


async def test_handed_to_a_lawyer_and_status_by_sms(stack: Stack, servers: Servers) -> None:
    phone = unique_phone()
    case = await submit_case(stack, phone)
    await eventually(lambda: phone_lines(stack, phone), timeout=120)
    await offered(stack, case)
    await publish(servers, referral_accepted(case["id"], at=datetime.now(UTC)))
    await eventually(lambda: len(phone_lines(stack, phone)) == 2, timeout=120)
    accepted = phone_lines(stack, phone)[1]
    assert accepted["template"] == "referral_accepted"
    assert "Hong Kong" in accepted["body"]
    assert case["reference"] in accepted["body"]

    token = {"X-Lintas-Provider-Token": stack.keys["sms_inbound_token"]}
    async with httpx.AsyncClient(base_url=stack.urls["notify"], timeout=10) as client:
        ask = {"from": phone, "body": f"status {case['reference'].lower()}", "id": "e2e-1"}
        assert (await client.post("/v1/inbound-sms", json=ask)).status_code == 401
        assert (await client.post("/v1/inbound-sms", json=ask, headers=token)).json()["replied"]
        stranger = unique_phone()
        probe = {"from": stranger, "body": case["reference"], "id": "e2e-2"}
        assert (await client.post("/v1/inbound-sms", json=probe, headers=token)).json()["replied"]
    [reply] = [line for line in phone_lines(stack, phone) if line["template"] == "status_reply"]
    assert reply["body"] == f"Lintas: Kasus {case['reference']}: sudah ditangani pengacara."
    [neutral] = phone_lines(stack, stranger)
    assert neutral["template"] == "status_unknown"
    assert case["reference"] not in neutral["body"]


async def test_stop_by_sms_silences_the_next_message(stack: Stack, servers: Servers) -> None:
    phone = unique_phone()
    case = await submit_case(stack, phone)
    await eventually(lambda: phone_lines(stack, phone), timeout=120)
    token = {"X-Lintas-Provider-Token": stack.keys["sms_inbound_token"]}
    async with httpx.AsyncClient(base_url=stack.urls["notify"], timeout=10) as client:
        stop = {"from": phone, "body": " BERHENTI ", "id": f"e2e-{uuid.uuid4()}"}
        answer = await client.post("/v1/inbound-sms", json=stop, headers=token)
    assert answer.json() == {"intent": "opt_out", "replied": True}
    await publish(servers, deadline_approaching(case["id"]))

    mongo = make_mongo_client(servers.mongodb_uri, app_name="e2e-notify-check")
    try:
        messages = mongo[stack.databases["notify"]]["messages"]

        async def suppressed() -> bool:
            doc = await messages.find_one(
                {"case_id": case["id"], "template": "deadline_approaching"}
            )
            return bool(doc and doc["status"] == "suppressed")

        await eventually(suppressed, timeout=120)
    finally:
        await mongo.close()
    assert [line["template"] for line in phone_lines(stack, phone)] == [
        "case_received",
        "opted_out",
    ]


PREFERENCE_CHANGED = "org.lintas.case.sms_preference_changed"  # the NGO's, on intake's topic
PREFERENCE_TEXTED = "org.lintas.notification.sms_preference_texted"  # hers, on notify's


async def test_stop_by_sms_shows_on_the_case_at_intake_without_an_echo(
    stack: Stack, servers: Servers
) -> None:
    phone = unique_phone()
    case = await submit_case(stack, phone)
    await eventually(lambda: phone_lines(stack, phone), timeout=120)  # notify knows her
    token = {"X-Lintas-Provider-Token": stack.keys["sms_inbound_token"]}
    ngo = {"X-API-Key": stack.keys["ngo_id"]}
    async with (
        httpx.AsyncClient(base_url=stack.urls["notify"], timeout=10) as notify,
        httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as intake,
    ):
        stop = {"from": phone, "body": "stop", "id": f"e2e-{uuid.uuid4()}"}
        answer = await notify.post("/v1/inbound-sms", json=stop, headers=token)
        assert answer.json() == {"intent": "opt_out", "replied": True}

        async def shown(opted_out: bool) -> dict[str, Any] | None:
            view: dict[str, Any] = (await intake.get(f"/v1/cases/{case['id']}", headers=ngo)).json()
            return view if view["sms_opted_out"] is opted_out else None

        view = await eventually(lambda: shown(True), timeout=120)
        assert view is not None
        assert view["sms_preference_channel"] == "sms"
        timeline = (await intake.get(f"/v1/cases/{case['id']}/timeline", headers=ngo)).json()
        texted = [e for e in timeline["entries"] if e["type"] == PREFERENCE_TEXTED]
        assert [(e["source"], e["summary"]) for e in texted] == [
            ("notify", "worker opted out of SMS by text message")
        ]

        # Her NGO opts her back in: notify applies it, and neither side answers the other.
        back = await intake.post(
            f"/v1/cases/{case['id']}/sms-preference", json={"opted_out": False}, headers=ngo
        )
        assert back.status_code == 200, back.text
        assert back.json()["sms_preference_channel"] == "api"

    def about_her_case(kind: str) -> Callable[[SeenRecord], bool]:
        return lambda r: (
            r.headers.get("ce_type") == kind and r.headers.get("ce_subject") == case["id"]
        )

    # Each on its own service's topic: intake's change on intake's, hers on notify's.
    announced = await collect(
        servers.kafka_bootstrap, CASES, about_her_case(PREFERENCE_CHANGED), count=1, settle=5.0
    )
    assert [r.headers["ce_source"] for r in announced] == ["/lintas/intake"]
    [notified] = await collect(
        servers.kafka_bootstrap,
        NOTIFICATIONS,
        about_her_case(PREFERENCE_TEXTED),
        count=1,
        settle=5.0,
    )
    assert notified.headers["ce_source"] == "/lintas/notify"
    # The case and the preference: nothing about her phone.
    assert set(json.loads(notified.value or b"{}")) == {
        "case_id",
        "opted_out",
        "channel",
        "changed_at",
    }
    await eventually(lambda: _notify_opted_in(stack, servers, phone), timeout=120)


async def _notify_opted_in(stack: Stack, servers: Servers, phone: str) -> bool:
    mongo = make_mongo_client(servers.mongodb_uri, app_name="e2e-notify-check")
    try:
        preferences = mongo[stack.databases["notify"]]["preferences"]
        doc = await preferences.find_one({"_id": phone_lookup_hash(phone, PHONE_HASH_SECRET)})
    finally:
        await mongo.close()
    return bool(doc and doc["opted_out"] is False and doc["channel"] == "api")
