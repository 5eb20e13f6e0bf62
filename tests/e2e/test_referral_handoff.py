"""A legal partner's side of a handoff, with the three services running for real.

An NGO submits through intake; the Hong Kong partner hears of the offer by signed
webhook (a real receiver in this test) and on Kafka, reads the minimised case through the
referral API, and accepts or declines. Consent recorded later resumes routing.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import date
from typing import Any

import httpx
import pytest
from lintas_referral.domain.forums import add_months
from lintas_shared.crypto import DataKey
from lintas_shared.envelope import from_kafka_record, to_kafka_record
from lintas_shared.events import (
    CaseRoutingBlocked,
    ConsentRecorded,
    ConsentSummary,
    ReferralAccepted,
    ReferralOffered,
    make_event,
    parse_payload,
)
from lintas_shared.topics import CASES, REFERRALS
from lintas_shared.values import ConsentPurpose

from tests.e2e.conftest import Stack
from tests.support.fixtures import RECENT_CLAIM_AGE, recent_example_case
from tests.support.kafka import collect, eventually, produce_raw
from tests.support.servers import Servers
from tests.support.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e
MANIFEST = {
    "worker.full_name",
    "worker.phone",
    "worker.preferred_language",
    "worker.current_country",
    "employment.country",
    "employment.sector",
    "employment.started_on",
    "employment.ended_on",
    "employment.employer_name",
    "employment.placement_agency",
    "claims[].type",
    "claims[].amount",
    "claims[].arose_on",
    "claims[].claimants",
    "claims[].description",
}


def fields_of(shared: dict[str, Any]) -> set[str]:
    paths = set()
    for section, body in shared.items():
        if section == "claims":
            paths |= {f"claims[].{k}" for claim in body for k in claim}
        else:
            paths |= {f"{section}.{k}" for k in body}
    return paths


async def submit(stack: Stack, **consent: Any) -> dict[str, Any]:
    doc = recent_example_case(external_ref=f"NGO-{uuid.uuid4()}")
    doc["consent"].update(consent)
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as client:
        created = await client.post(
            "/v1/cases", json=doc, headers={"X-API-Key": stack.keys["ngo_id"]}
        )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def offer_for(partner: httpx.AsyncClient, case_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        listed = (await partner.get("/v1/referrals", params={"status": "offered"})).json()
        return next((r for r in listed if r["case_id"] == case_id), None)

    found = await eventually(find, timeout=60)
    assert isinstance(found, dict)
    return found


async def test_partner_hears_by_signed_webhook_reads_minimised_case_and_accepts(
    stack: Stack, servers: Servers
) -> None:
    url = stack.urls["referral"]
    hk = httpx.AsyncClient(base_url=url, timeout=10, headers={"X-API-Key": stack.keys["legal_hk"]})
    sg = httpx.AsyncClient(base_url=url, timeout=10, headers={"X-API-Key": stack.keys["legal_sg"]})
    with webhook_receiver() as receiver:
        async with hk, sg:
            registered = await hk.put("/v1/webhook", json={"url": receiver.url})
            assert registered.status_code == 200, registered.text
            receiver.secret = registered.json()["secret"]
            assert receiver.secret.startswith("whsec_")
            assert registered.json()["signature_scheme"] == "standard"
            refused = await hk.put("/v1/webhook", json={"url": "http://lawyer.example.hk/x"})
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["field"] == "url"

            case = await submit(stack)
            offer = await offer_for(hk, case["id"])
            rid = offer["id"]

            view = (await hk.get(f"/v1/referrals/{rid}")).json()
            [claim] = view["claims"]
            assert claim["forum"]["code"] == "HK-MECAB"
            assert [p["code"] for p in claim["prerequisites"]] == ["HK-LD-CONCILIATION"]
            # Six years (Limitation Ord.); MECAB hears it only if filed within 12 months.
            arose = date.today() - RECENT_CLAIM_AGE
            assert claim["deadline"]["date"] == add_months(arose, 72).isoformat()
            assert claim["deadline"]["verified"] is True
            assert claim["forum_until"] == add_months(arose, 12).isoformat()
            assert claim["deadline_passed"] is False
            assert fields_of(view["shared"]) == MANIFEST
            assert view["shared"]["worker"]["full_name"] == "Contoh Pekerja"
            assert view["shared"]["employment"]["employer_name"] == "Contoh Majikan"
            raw = (await hk.get(f"/v1/referrals/{rid}")).text
            for absent in ("1994-05-17", "Lampung", "female", "caseworker-17"):
                assert absent not in raw

            assert (await sg.get(f"/v1/referrals/{rid}")).status_code == 404

            # A partner consuming Kafka opens the offer's sealed content with its key.
            [offered] = await collect(
                servers.kafka_bootstrap,
                REFERRALS,
                lambda r: (
                    r.key == case["id"].encode() and r.headers["ce_type"] == ReferralOffered.TYPE
                ),
            )
            token = parse_payload(
                from_kafka_record(offered.value, offered.headers), ReferralOffered
            ).content
            assert token is not None
            assert "Contoh Pekerja" not in (offered.value or b"").decode()
            key = (await hk.get(f"/v1/referrals/{rid}/content-key")).json()
            opened = DataKey(case["id"], base64.urlsafe_b64decode(key["key"])).decrypt(
                "referral.content", token
            )
            assert fields_of(json.loads(opened)) == MANIFEST
            assert (await sg.get(f"/v1/referrals/{rid}/content-key")).status_code == 404
            assert (await sg.post(f"/v1/referrals/{rid}/accept")).status_code == 404

            accepted = await hk.post(f"/v1/referrals/{rid}/accept")
            assert accepted.json()["status"] == "accepted"

            def delivered(event_type: str) -> list[dict[str, Any]]:
                return [
                    b
                    for b in receiver.accepted
                    if b["type"] == event_type and b["data"]["referral_id"] == rid
                ]

            await eventually(lambda: delivered("org.lintas.referral.offered"), timeout=60)
            await eventually(lambda: delivered("org.lintas.referral.accepted"), timeout=60)
            assert receiver.rejected == []
            await _receiver_refuses_forgeries(receiver)
            log = (await hk.get(f"/v1/referrals/{rid}/deliveries")).json()
            assert {d["state"] for d in log} == {"delivered"}
            assert (await sg.get(f"/v1/referrals/{rid}/deliveries")).status_code == 404

    [record] = await collect(
        servers.kafka_bootstrap,
        REFERRALS,
        lambda r: r.key == case["id"].encode() and r.headers["ce_type"] == ReferralAccepted.TYPE,
        settle=2.0,
    )
    event = parse_payload(from_kafka_record(record.value, record.headers), ReferralAccepted)
    assert (event.referral_id, event.partner_organisation_id) == (rid, "org-demo-legal-hk")
    for secret in ("Contoh Pekerja", "6281234567890", "Majikan"):
        assert secret not in (record.value or b"").decode()


async def test_declined_by_the_only_partner_leaves_the_case_unassigned(
    stack: Stack, servers: Servers
) -> None:
    case = await submit(stack)
    async with httpx.AsyncClient(
        base_url=stack.urls["referral"], timeout=10, headers={"X-API-Key": stack.keys["legal_hk"]}
    ) as hk:
        offer = await offer_for(hk, case["id"])
        declined = await hk.post(
            f"/v1/referrals/{offer['id']}/decline", json={"reason": "conflict of interest"}
        )
        assert declined.json()["status"] == "declined"
    [blocked] = await collect(
        servers.kafka_bootstrap,
        REFERRALS,
        lambda r: r.key == case["id"].encode() and r.headers["ce_type"] == CaseRoutingBlocked.TYPE,
    )
    payload = parse_payload(from_kafka_record(blocked.value, blocked.headers), CaseRoutingBlocked)
    assert payload.status == "unassigned"
    assert re.search("declined or let the offer expire", payload.reason)
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=10) as intake:

        async def unassigned() -> bool:
            body = (
                await intake.get(
                    f"/v1/cases/{case['id']}", headers={"X-API-Key": stack.keys["ngo_id"]}
                )
            ).json()
            return bool(body["status"] == "unassigned")

        await eventually(unassigned, timeout=60)


async def test_a_new_consent_resumes_routing(stack: Stack, servers: Servers) -> None:
    case = await submit(stack, share_with_countries=["SG"])
    async with httpx.AsyncClient(
        base_url=stack.urls["referral"], timeout=10, headers={"X-API-Key": stack.keys["legal_hk"]}
    ) as hk:
        await collect(
            servers.kafka_bootstrap,
            REFERRALS,
            lambda r: (
                r.key == case["id"].encode() and r.headers["ce_type"] == CaseRoutingBlocked.TYPE
            ),
        )
        assert [
            r for r in (await hk.get("/v1/referrals")).json() if r["case_id"] == case["id"]
        ] == []
        consent = make_event(
            ConsentRecorded(
                case_id=case["id"],
                consent=ConsentSummary(
                    consent_id=f"consent-{uuid.uuid4()}",
                    purposes=(ConsentPurpose.LEGAL_REFERRAL,),
                    share_with_countries=("HK",),
                ),
            ),
            source="/lintas/intake",
            subject=case["id"],
        )
        record = to_kafka_record(consent)
        await produce_raw(
            servers.kafka_bootstrap, CASES, record.value, key=record.key, headers=record.headers
        )
        offer = await offer_for(hk, case["id"])
        view = (await hk.get(f"/v1/referrals/{offer['id']}")).json()
        assert view["handoff"]["consent_id"] == consent.data["consent"]["consent_id"]


async def test_referral_logs_hold_no_personal_data(stack: Stack) -> None:
    text = stack.logs["referral"].read_text()
    assert text
    for secret in ("Contoh Pekerja", "6281234567890", "Contoh Majikan", "Lampung Timur"):
        assert secret not in text


async def _receiver_refuses_forgeries(receiver: Receiver) -> None:
    """What the Standard Webhooks library and a seen-id set give a partner: a delivery
    sent again is a replay, a changed body fails the signature, an old timestamp is
    stale. Each is a real delivery from the stack, sent again by hand."""
    seen = next(r for r in receiver.requests if "webhook-signature" in r.headers)
    attempts = {
        "replayed id": (seen.headers, seen.body),
        "bad signature": (seen.headers, seen.body.replace(b'"data":{', b'"data":{"x":1,', 1)),
        "stale timestamp": (
            {**seen.headers, "webhook-timestamp": str(int(time.time()) - 600)},
            seen.body,
        ),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for why, (headers, body) in attempts.items():
            before = len(receiver.rejected)
            sent = await client.post(
                receiver.url,
                content=body,
                headers={k: v for k, v in headers.items() if k not in ("content-length", "host")},
            )
            assert sent.status_code == 401, why
            assert receiver.rejected[before:] == [why]
    receiver.rejected.clear()
