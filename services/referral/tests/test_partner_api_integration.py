"""The partner API on the real store: minimised view, tenancy, lifecycle, errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lintas_referral import handlers
from lintas_referral.bootstrap import create_app
from lintas_referral.domain.handoff import flatten_fields
from lintas_referral.domain.routing import Partner
from lintas_referral.settings import ReferralSettings
from lintas_shared.audit_chain import AuditChain
from lintas_shared.crypto import CaseKeyMissingError, DataKey, KeyVault
from lintas_shared.envelope import from_kafka_record
from lintas_shared.events import (
    PARTNER_NOTE_FIELD,
    CaseErased,
    ReferralDeclined,
    make_event,
    parse_payload,
)
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.mongo import Document
from lintas_shared.outbox import OutboxRelay, entry_event
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    REFERRAL_AUDIENCE,
    PersonClaims,
    Role,
    issue_person_token,
    new_signing_key,
)
from lintas_shared.security import hash_api_key
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import REFERRALS
from lintas_shared.unit_of_work import MongoVersionedDocuments
from lintas_shared.values import ClaimType
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from services.referral.tests.conftest import FakeClock
from tests.support.kafka import collect
from tests.support.referral_cases import (
    AGENCY,
    DESCRIPTION,
    EMPLOYER,
    WORKER_NAME,
    WORKER_PHONE,
    case,
    claim,
    submitted,
)
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"
KEYS = {"org-hk-1": "lk_hk_one", "org-hk-2": "lk_hk_two", "org-sg": "lk_sg"}
CONSOLE_PRIVATE, CONSOLE_PUBLIC = new_signing_key()


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    vault: KeyVault
    clock: FakeClock

    def as_(self, partner: str) -> dict[str, str]:
        return {"X-API-Key": KEYS[partner]}

    def as_person(
        self, partner: str, person_id: str = "person-lawyer-1", role: Role = Role.LAWYER
    ) -> dict[str, str]:
        """Headers of a person of `partner`, as the console sends them."""
        claims = PersonClaims(partner, person_id, role)
        token = issue_person_token(CONSOLE_PRIVATE, claims, REFERRAL_AUDIENCE)
        return {"Authorization": f"Bearer {token}"}

    async def submit(self, case_id: str, **kwargs: Any) -> str:
        key = await self.vault.create(case_id)
        await handlers.on_case_submitted(
            submitted(case(case_id, key=key, **kwargs)), self.app.state.referrals
        )
        routing = await self.app.state.routings.get(case_id)
        return str(routing.referrals[0].id)


@pytest.fixture
async def api(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Api]:
    settings = ReferralSettings(
        common=CommonSettings(
            mongodb_uri=servers.mongodb_uri,
            kafka_bootstrap=servers.kafka_bootstrap,
            keyvault_database=database_name,
            api_key_pepper=SecretStr(PEPPER),
            console_public_key=CONSOLE_PUBLIC,
        ),
        database=database_name,
    )
    app = create_app(settings)  # no lifespan: the store is all these tests need
    clock = FakeClock()
    app.state.referrals = dataclasses.replace(app.state.referrals, clock=clock)
    for pid, country in (("org-hk-1", "HK"), ("org-hk-2", "HK"), ("org-sg", "SG")):
        await app.state.partners.upsert(
            Partner(pid, pid, country, open_referrals=0)
            if pid != "org-hk-2"
            else Partner(pid, pid, country, capacity=10),
            api_key_hashes=[hash_api_key(KEYS[pid], PEPPER)],
        )
    vault = KeyVault(
        mongo[database_name]["case_keys"], settings.common.master_key.get_secret_value()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        yield Api(app, client, vault, clock)


async def test_the_partner_sees_exactly_the_manifest_fields(api: Api) -> None:
    rid = await api.submit(
        "case-view",
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    response = await api.client.get(f"/v1/referrals/{rid}", headers=api.as_("org-hk-1"))
    assert response.status_code == 200, response.text
    view = response.json()
    manifest = api.app.state.referrals.policy.manifest.fields
    assert view["handoff"]["fields"] == list(manifest)
    assert flatten_fields(view["shared"]) == set(manifest)
    shared = view["shared"]
    assert shared["worker"]["full_name"] == WORKER_NAME
    assert shared["worker"]["phone"] == WORKER_PHONE
    assert shared["employment"]["employer_name"] == EMPLOYER
    assert shared["employment"]["placement_agency"] == AGENCY
    # Only the claims handed to this partner: the Indonesian placement-fee claim is not.
    assert [c["type"] for c in shared["claims"]] == ["unpaid_wages"]
    assert shared["claims"][0]["description"] == DESCRIPTION
    assert view["claims"][0]["forum"]["code"] == "HK-MECAB"
    assert view["claims"][0]["deadline"]["verified"] is True  # the MECAB row is verified
    assert view["handoff"]["consent_id"] == "consent-case-view"
    assert view["handoff"]["recipient_country"] == "HK"
    for absent in (
        "date_of_birth",
        "home_region",
        "passport_number",
        "internal_notes",
        "phone_hash",
    ):
        assert absent not in response.text
    audit = await api.app.state.audit.for_case("case-view")
    assert [(a["organisation_id"], a["referral_id"]) for a in audit] == [("org-hk-1", rid)]


async def test_another_partners_referral_answers_404(api: Api) -> None:
    rid = await api.submit("case-ten")
    for method, path, body in (
        ("GET", f"/v1/referrals/{rid}", None),
        ("POST", f"/v1/referrals/{rid}/accept", None),
        ("POST", f"/v1/referrals/{rid}/decline", {"reason": "x"}),
        ("POST", f"/v1/referrals/{rid}/progress", {"filed_at_forum": True}),
        ("POST", f"/v1/referrals/{rid}/close", {"outcome": "settled"}),
    ):
        response = await api.client.request(method, path, json=body, headers=api.as_("org-sg"))
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    listed = await api.client.get("/v1/referrals", headers=api.as_("org-sg"))
    assert listed.json() == []
    unknown = await api.client.get("/v1/referrals", headers={"X-API-Key": "lk_nope"})
    assert unknown.status_code == 401


async def test_list_filters_by_status(api: Api) -> None:
    first = await api.submit("case-l1")
    second = await api.submit("case-l2", share_with=(), share_with_organisations=("org-hk-1",))
    await api.client.post(f"/v1/referrals/{first}/accept", headers=api.as_("org-hk-1"))
    response = await api.client.get(
        "/v1/referrals", params={"status": "offered"}, headers=api.as_("org-hk-1")
    )
    assert [r["id"] for r in response.json()] == [second]
    everything = await api.client.get("/v1/referrals", headers=api.as_("org-hk-1"))
    assert {r["id"] for r in everything.json()} == {first, second}
    assert "Siti" not in everything.text  # the list carries no personal data
    bad = await api.client.get(
        "/v1/referrals", params={"status": "maybe"}, headers=api.as_("org-hk-1")
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "status"


async def test_accept_progress_close_and_conflicts(api: Api) -> None:
    rid = await api.submit("case-life")
    hk = api.as_("org-hk-1")
    early = await api.client.post(f"/v1/referrals/{rid}/progress", json={}, headers=hk)
    assert early.status_code == 409
    assert early.json()["detail"] == "referral is offered; cannot become in_progress"
    accepted = await api.client.post(f"/v1/referrals/{rid}/accept", headers=hk)
    assert accepted.json()["status"] == "accepted"
    progressed = await api.client.post(
        f"/v1/referrals/{rid}/progress",
        json={"filed_at_forum": True, "hearing_on": "2026-11-02", "documents_needed": True},
        headers=hk,
    )
    assert progressed.json()["status"] == "in_progress"
    closed = await api.client.post(
        f"/v1/referrals/{rid}/close",
        json={
            "outcome": "recovered",
            "amounts_recovered": [{"currency": "HKD", "value": "9000.00"}],
        },
        headers=hk,
    )
    assert closed.status_code == 200, closed.text
    assert [h["status"] for h in closed.json()["history"]] == [
        "offered",
        "accepted",
        "in_progress",
        "closed",
    ]


async def test_bad_bodies_name_their_fields(api: Api) -> None:
    rid = await api.submit("case-bad")
    hk = api.as_("org-hk-1")
    decline = await api.client.post(f"/v1/referrals/{rid}/decline", json={}, headers=hk)
    assert decline.status_code == 422
    assert decline.json()["errors"][0]["field"] == "reason"
    close = await api.client.post(
        f"/v1/referrals/{rid}/close",
        json={"outcome": "won", "amounts_recovered": [{"currency": "HKD", "value": 9000}]},
        headers=hk,
    )
    assert {e["field"] for e in close.json()["errors"]} == {
        "outcome",
        "amounts_recovered[0].value",
    }


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json"])
async def test_deep_nesting_answers_400_on_every_endpoint_whatever_the_content_type(
    api: Api, content_type: str | None
) -> None:
    deep = b'{"reason": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    headers = api.as_("org-hk-1") | ({"Content-Type": content_type} if content_type else {})
    schema = (await api.client.get("/openapi.json")).json()
    with_bodies = [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert len(with_bodies) > 3
    for method, path in with_bodies:
        answer = await api.client.request(method, path, content=deep, headers=headers)
        assert (method, path, answer.status_code) == (method, path, 400)
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_decline_offers_the_next_partner_who_then_sees_it(api: Api) -> None:
    rid = await api.submit("case-next")
    declined = await api.client.post(
        f"/v1/referrals/{rid}/decline", json={"reason": "conflict"}, headers=api.as_("org-hk-1")
    )
    assert declined.json()["status"] == "declined"
    offered = await api.client.get(
        "/v1/referrals", params={"status": "offered"}, headers=api.as_("org-hk-2")
    )
    [offer] = offered.json()
    assert offer["case_id"] == "case-next"
    # The first partner still sees its declined referral, but no longer the case's data.
    mine = await api.client.get("/v1/referrals", headers=api.as_("org-hk-1"))
    assert [r["status"] for r in mine.json()] == ["declined"]
    view = (await api.client.get(f"/v1/referrals/{rid}", headers=api.as_("org-hk-1"))).json()
    assert view["shared"] is None
    key = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=api.as_("org-hk-1"))
    assert key.status_code == 410
    assert WORKER_NAME not in str(view)


async def test_the_offer_event_carries_content_only_its_partner_can_open(api: Api) -> None:
    rid = await api.submit("case-sealed")
    doc = await api.app.state.routings.raw("case-sealed")
    [entry] = doc["outbox"]
    token = entry_event(entry).data["content"]
    assert token.startswith("enc:v1:")
    assert WORKER_NAME not in str(doc["outbox"])

    answer = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=api.as_("org-hk-1"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["associated_data"] == "case-sealed\x1freferral.content"
    key = DataKey("case-sealed", base64.urlsafe_b64decode(body["key"]))
    content = json.loads(key.decrypt("referral.content", token))
    assert flatten_fields(content) == set(api.app.state.referrals.policy.manifest.fields)
    assert content["worker"]["phone"] == WORKER_PHONE

    other = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=api.as_("org-sg"))
    assert other.status_code == 404
    audit = await api.app.state.audit.for_case("case-sealed")
    assert [(a["organisation_id"], a["fields"][0]) for a in audit] == [
        ("org-hk-1", "referral.content")
    ]

    # Erasure destroys the case key: the content key is gone, and so is the partner's view.
    assert await api.vault.destroy("case-sealed")
    gone = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=api.as_("org-hk-1"))
    assert gone.status_code == 410
    view = (await api.client.get(f"/v1/referrals/{rid}", headers=api.as_("org-hk-1"))).json()
    assert (view["shared"], view["erased"]) == (None, True)


async def test_hand_on_to_an_indonesian_partner_keeps_the_history(api: Api) -> None:
    # The HK lawyer finds that the deductions were the placement agency's doing.
    await api.app.state.partners.upsert(Partner("org-id", "ID partner", "ID"))
    rid = await api.submit(
        "case-hand", claims=(claim(ClaimType.ILLEGAL_DEDUCTIONS),), share_with=("HK", "ID")
    )
    hk = api.as_("org-hk-1")
    await api.client.post(f"/v1/referrals/{rid}/accept", headers=hk)
    handed = await api.client.post(
        f"/v1/referrals/{rid}/hand-on",
        json={"to_partner_id": "org-id", "claim_indexes": [0], "reason": "agency's deductions"},
        headers=hk,
    )
    assert handed.status_code == 200, handed.text
    body = handed.json()
    assert (body["country"], body["handed_on_from"], body["status"]) == ("ID", rid, "offered")
    assert body["history"][0]["reason"] == "agency's deductions"
    routing = await api.app.state.routings.get("case-hand")
    assert [(r.partner_organisation_id, r.status) for r in routing.referrals] == [
        ("org-hk-1", "accepted"),
        ("org-id", "offered"),
    ]
    again = await api.client.post(
        f"/v1/referrals/{rid}/hand-on",
        json={"to_partner_id": "org-id", "claim_indexes": [0], "reason": "again"},
        headers=hk,
    )
    assert again.status_code == 409
    refused = await api.client.post(
        f"/v1/referrals/{rid}/hand-on",
        json={"to_partner_id": "org-sg", "claim_indexes": [0], "reason": "x"},
        headers=hk,
    )
    assert refused.status_code == 409
    assert "consent" in refused.json()["detail"]


async def test_partners_words_are_sealed_in_the_store_and_on_kafka_and_shown_to_them(
    api: Api, servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    case_id = f"case-words-{uuid.uuid4().hex[:8]}"
    rid = await api.submit(case_id)
    reason, note = "we acted for Wulandari's agency", "Wulandari will bring her payslips"
    hk1, hk2 = api.as_("org-hk-1"), api.as_("org-hk-2")
    declined = await api.client.post(
        f"/v1/referrals/{rid}/decline", json={"reason": reason}, headers=hk1
    )
    assert declined.status_code == 200, declined.text
    # The partner reads its own words back, opened with the case's key; not in the list.
    assert declined.json()["history"][-1]["reason"] == reason
    view = (await api.client.get(f"/v1/referrals/{rid}", headers=hk1)).json()
    assert [(h["status"], h["reason"]) for h in view["history"]] == [
        ("offered", None),
        ("declined", reason),
    ]
    [listed] = (await api.client.get("/v1/referrals", headers=hk1)).json()
    assert listed["history"][-1]["reason"] is None
    routing = await api.app.state.routings.get(case_id)
    second = routing.referrals[1].id
    assert (await api.client.post(f"/v1/referrals/{second}/accept", headers=hk2)).status_code == 200
    progressed = await api.client.post(
        f"/v1/referrals/{second}/progress", json={"note": note}, headers=hk2
    )
    assert progressed.status_code == 200, progressed.text

    raw = await mongo[database_name]["routings"].find_one({"_id": case_id})
    assert raw is not None
    assert "Wulandari" not in str(raw)  # the routing and its outbox
    # Relayed to the real broker as the running service does; the raw records' bytes.
    broker = make_broker(servers.kafka_bootstrap, client_id=f"test-relay-{case_id}")
    await broker.connect()
    try:
        documents = MongoVersionedDocuments(mongo[database_name]["routings"])
        relay = OutboxRelay(documents, KafkaEventPublisher(broker))
        assert await relay.relay_once() > 0
    finally:
        await broker.stop()
    records = await collect(
        servers.kafka_bootstrap, REFERRALS, lambda r: r.key == case_id.encode(), count=5
    )
    for record in records:
        assert b"Wulandari" not in (record.value or b"")
    [sent] = [r for r in records if r.headers["ce_type"] == ReferralDeclined.TYPE]
    event = parse_payload(from_kafka_record(sent.value, sent.headers), ReferralDeclined)
    assert (event.reason, event.note is not None) == (None, True)
    key = await api.vault.get(case_id)
    assert event.note is not None
    assert key.decrypt(PARTNER_NOTE_FIELD, event.note) == reason

    # Erasure: intake destroys the key, referral drops the words; nothing opens them now.
    assert await api.vault.destroy(case_id)
    with pytest.raises(CaseKeyMissingError):
        await api.vault.get(case_id)
    gone = (await api.client.get(f"/v1/referrals/{rid}", headers=hk1)).json()
    assert gone["history"][-1]["reason"] == handlers.ERASED_NOTE
    await handlers.on_case_erased(
        make_event(
            CaseErased(case_id=case_id, erased_at=api.clock()),
            source="/lintas/intake",
            subject=case_id,
        ),
        api.app.state.referrals,
    )
    gone = (await api.client.get(f"/v1/referrals/{rid}", headers=hk1)).json()
    assert gone["history"][1] == {**view["history"][1], "reason": None}
    assert "enc:v1:" not in str(await api.app.state.routings.raw(case_id))


async def test_hand_on_only_moves_the_callers_own_claims_to_another_active_partner(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await api.app.state.partners.upsert(Partner("org-id", "ID partner", "ID"))
    await api.app.state.partners.upsert(Partner("org-id-gone", "ID former partner", "ID"))
    await mongo[database_name]["partners"].update_one(
        {"_id": "org-id-gone"}, {"$set": {"active": False}}
    )
    rid = await api.submit(
        "case-pull",
        claims=(claim(), claim(ClaimType.EXCESS_PLACEMENT_FEES, "20000000.00", "IDR")),
        share_with=("HK", "ID"),
    )
    hk = api.as_("org-hk-1")
    await api.client.post(f"/v1/referrals/{rid}/accept", headers=hk)
    attempts = {
        "another referral's claim": ("org-hk-2", [1]),
        "another referral's claim, to itself": ("org-hk-1", [1]),
        "its own claim, to itself": ("org-hk-1", [0]),
        "an unknown claim": ("org-hk-2", [5]),
        "an unknown partner": ("org-nowhere", [0]),
        "an inactive partner": ("org-id-gone", [0]),
    }
    for why, (to, indexes) in attempts.items():
        response = await api.client.post(
            f"/v1/referrals/{rid}/hand-on",
            json={"to_partner_id": to, "claim_indexes": indexes, "reason": why},
            headers=hk,
        )
        assert response.status_code == 409, why
    routing = await api.app.state.routings.get("case-pull")
    assert [(r.partner_organisation_id, r.claim_indexes) for r in routing.referrals] == [
        ("org-hk-1", (0,)),
        ("org-id", (1,)),
    ]
    doc = await api.app.state.routings.raw("case-pull")
    offers = [e for e in doc["outbox"] if entry_event(e).type.endswith("offered")]
    assert len(offers) == 2  # the two routed offers; nothing was handed on


async def test_closed_referral_shows_only_its_outcome_after_the_retention(api: Api) -> None:
    rid = await api.submit("case-retention")
    hk = api.as_("org-hk-1")
    await api.client.post(f"/v1/referrals/{rid}/accept", headers=hk)
    closed = await api.client.post(
        f"/v1/referrals/{rid}/close",
        json={"outcome": "settled", "amounts_recovered": []},
        headers=hk,
    )
    assert closed.status_code == 200, closed.text
    retention = api.app.state.referrals.policy.closed_view_retention
    assert retention == timedelta(days=30)  # LINTAS_REFERRAL_CLOSED_VIEW_DAYS' default
    view = (await api.client.get(f"/v1/referrals/{rid}", headers=hk)).json()
    assert view["shared"] is not None
    assert datetime.fromisoformat(view["shared_until"]) == api.clock.now + retention
    key = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=hk)
    assert key.status_code == 200
    api.clock.advance(days=30, seconds=1)
    later = await api.client.get(f"/v1/referrals/{rid}", headers=hk)
    assert later.status_code == 200
    view = later.json()
    assert (view["status"], view["outcome"], view["shared"]) == ("closed", "settled", None)
    assert WORKER_NAME not in later.text
    gone = await api.client.get(f"/v1/referrals/{rid}/content-key", headers=hk)
    assert gone.status_code == 410
    # A withdrawn referral loses the view at once.
    wid = await api.submit("case-withdrawn")
    await api.client.post(f"/v1/referrals/{wid}/accept", headers=hk)
    await handlers.apply(
        api.app.state.referrals, "case-withdrawn", lambda r, now, _partners: r.close_case(now)
    )
    view = (await api.client.get(f"/v1/referrals/{wid}", headers=hk)).json()
    assert (view["status"], view["shared"]) == ("withdrawn", None)
    withdrawn = await api.client.get(f"/v1/referrals/{wid}/content-key", headers=hk)
    assert withdrawn.status_code == 410


async def test_operator_redelivery_needs_the_operator_token(api: Api) -> None:
    path = "/v1/operator/webhook-deliveries/no-such-delivery/redeliver"
    assert (await api.client.post(path)).status_code == 401
    assert (await api.client.post(path, headers={"X-Operator-Token": "wrong"})).status_code == 401
    token = api.app.state.operator_token
    missing = await api.client.post(path, headers={"X-Operator-Token": token})
    assert missing.status_code == 404


# --- lawyers, through the console's tokens ---------------------------------------------


async def test_a_lawyer_token_accepts_and_the_history_audit_and_event_name_the_lawyer(
    api: Api,
) -> None:
    rid = await api.submit("case-person")
    lawyer = "person-lawyer-hk-9"
    view = await api.client.get(f"/v1/referrals/{rid}", headers=api.as_person("org-hk-1", lawyer))
    assert view.status_code == 200, view.text
    assert view.json()["shared"]["worker"]["full_name"] == WORKER_NAME
    accepted = await api.client.post(
        f"/v1/referrals/{rid}/accept", headers=api.as_person("org-hk-1", lawyer)
    )
    assert accepted.status_code == 200, accepted.text
    progressed = await api.client.post(
        f"/v1/referrals/{rid}/progress", json={"filed_at_forum": True}, headers=api.as_("org-hk-1")
    )
    assert progressed.status_code == 200, progressed.text
    assert [(h["status"], h["person_id"]) for h in progressed.json()["history"]] == [
        ("offered", None),
        ("accepted", lawyer),
        ("in_progress", None),  # the partner's system, by API key
    ]
    doc = await api.app.state.routings.raw("case-person")
    data = {entry_event(e).type: entry_event(e).data for e in doc["outbox"]}
    assert data["org.lintas.referral.accepted"]["by_person_id"] == lawyer
    assert data["org.lintas.referral.progressed"]["by_person_id"] is None
    audit = await api.app.state.audit.for_case("case-person")
    assert [(a["organisation_id"], a["person_id"]) for a in audit] == [("org-hk-1", lawyer)]
    # The partner's scope holds for its lawyers too.
    other = await api.client.get(f"/v1/referrals/{rid}", headers=api.as_person("org-sg"))
    assert other.status_code == 404


async def test_only_lawyers_use_the_referral_api(api: Api) -> None:
    rid = await api.submit("case-roles")
    for role in (Role.CASEWORKER, Role.PROGRAMME, Role.ORG_ADMIN, Role.ADMIN):
        refused = await api.client.post(
            f"/v1/referrals/{rid}/accept", headers=api.as_person("org-hk-1", role=role)
        )
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == "application/problem+json"
        assert "lawyers" in refused.json()["detail"]
    routing = await api.app.state.routings.get("case-roles")
    assert routing.referrals[0].status == "offered"


async def test_bad_person_tokens_answer_401_like_a_bad_key(api: Api) -> None:
    rid = await api.submit("case-bad-token")
    lawyer = PersonClaims("org-hk-1", "person-lawyer-1", Role.LAWYER)
    stranger_private, _ = new_signing_key()
    tokens = {
        "expired": issue_person_token(
            CONSOLE_PRIVATE,
            lawyer,
            REFERRAL_AUDIENCE,
            now=datetime.now(UTC) - timedelta(minutes=5),
        ),
        "another key": issue_person_token(stranger_private, lawyer, REFERRAL_AUDIENCE),
        "for intake": issue_person_token(CONSOLE_PRIVATE, lawyer, INTAKE_AUDIENCE),
        "unknown org": issue_person_token(
            CONSOLE_PRIVATE,
            PersonClaims("org-demo-ngo-id", "person-cw", Role.LAWYER),
            REFERRAL_AUDIENCE,
        ),
    }
    for why, token in tokens.items():
        response = await api.client.post(
            f"/v1/referrals/{rid}/accept", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, why
        assert response.headers["content-type"] == "application/problem+json", why
        assert response.headers["www-authenticate"] == "Bearer", why
        assert token not in response.text, why
    routing = await api.app.state.routings.get("case-bad-token")
    assert routing.referrals[0].status == "offered"


async def test_a_lawyer_hands_on_and_the_new_offer_names_them(api: Api) -> None:
    await api.app.state.partners.upsert(Partner("org-id", "ID partner", "ID"))
    rid = await api.submit(
        "case-hand-person", claims=(claim(ClaimType.ILLEGAL_DEDUCTIONS),), share_with=("HK", "ID")
    )
    lawyer = api.as_person("org-hk-1", "person-lawyer-2")
    await api.client.post(f"/v1/referrals/{rid}/accept", headers=lawyer)
    handed = await api.client.post(
        f"/v1/referrals/{rid}/hand-on",
        json={"to_partner_id": "org-id", "claim_indexes": [0], "reason": "agency's deductions"},
        headers=api.as_person("org-hk-1", "person-lawyer-2"),
    )
    assert handed.status_code == 200, handed.text
    assert handed.json()["history"][0]["person_id"] == "person-lawyer-2"
    doc = await api.app.state.routings.raw("case-hand-person")
    offers = [entry_event(e).data for e in doc["outbox"] if entry_event(e).type.endswith("offered")]
    assert [o.get("by_person_id") for o in offers] == [None, "person-lawyer-2"]


async def test_the_docs_show_both_ways_to_authenticate(api: Api) -> None:
    openapi = api.app.openapi()
    assert set(openapi["components"]["securitySchemes"]) == {"ApiKey", "PersonToken"}
    accept = openapi["paths"]["/v1/referrals/{referral_id}/accept"]["post"]
    assert accept["security"] == [{"ApiKey": []}, {"PersonToken": []}]
    assert "403" in accept["responses"]
    assert "person_id" in openapi["components"]["schemas"]["HistoryEntry"]["properties"]


async def _three_partner_reads(api: Api, case_id: str) -> str:
    rid = await api.submit(case_id)
    for path in ("", "", "/content-key"):
        read = await api.client.get(f"/v1/referrals/{rid}{path}", headers=api.as_("org-hk-1"))
        assert read.status_code == 200, read.text
    return rid


async def test_partner_reads_are_a_keyed_chain_whose_deleted_tail_is_named(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await _three_partner_reads(api, "case-chain")
    trail = api.app.state.audit
    report = await trail.verify()
    assert (report.chain, report.intact, report.entries, report.sealed) == ("referral", True, 3, 3)

    # The newest disclosure is deleted: nothing is left to show a gap, but the checkpoint
    # (in the key vault's database) still counts it.
    await mongo[database_name]["audit"].delete_one({"_id": 3})
    report = await trail.verify()
    assert (report.intact, report.missing, report.first_broken_seq) == (False, [3], 3)
    assert report.problem == "entry 3 is missing (the checkpoint counts 3, the chain ends at 2)"


async def test_a_rewritten_partner_read_is_reported_even_rechained(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await _three_partner_reads(api, "case-rewrite")
    audit = mongo[database_name]["audit"]
    # The partner that read is swapped, and every link after it recomputed without our key.
    forger = AuditChain("referral", audit, mongo[database_name]["audit_checkpoints"], "guess")
    prev = (await audit.find_one({"_id": 1}) or {})["mac"]
    for seq in (2, 3):
        doc = dict(await audit.find_one({"_id": seq}) or {})
        doc["organisation_id"] = "org-sg" if seq == 2 else doc["organisation_id"]
        doc["prev"] = prev
        doc["mac"] = prev = forger.entry_mac(doc)
        await audit.replace_one({"_id": seq}, doc)
    report = await api.app.state.audit.verify()
    assert (report.intact, report.first_broken_seq) == (False, 2)
    assert report.problem == "entry content was changed"


async def test_records_from_before_the_chain_are_listed_and_counted_as_unchained(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    await mongo[database_name]["audit"].insert_one(
        {
            "_id": "old-record",
            "case_id": "case-legacy",
            "referral_id": "ref-old",
            "organisation_id": "org-hk-1",
            "person_id": None,
            "fields": ["worker.full_name"],
            "at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )
    rid = await api.submit("case-legacy")
    assert (await api.client.get(f"/v1/referrals/{rid}", headers=api.as_("org-hk-1"))).is_success
    report = await api.app.state.audit.verify()
    assert (report.intact, report.entries, report.unchained) == (True, 1, 1)
    listed = await api.app.state.audit.for_case("case-legacy")
    assert [a["referral_id"] for a in listed] == ["ref-old", rid]


async def test_admins_read_a_cases_partner_reads_and_nobody_else_does(api: Api) -> None:
    rid = await _three_partner_reads(api, "case-admin-audit")
    params = {"case_id": "case-admin-audit"}
    admin = api.as_person("org-admin", "person-admin-1", Role.ADMIN)
    answer = await api.client.get("/v1/audit", params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    assert [(e["organisation_id"], e["referral_id"], e["seq"]) for e in answer.json()] == [
        ("org-hk-1", rid, 1),
        ("org-hk-1", rid, 2),
        ("org-hk-1", rid, 3),
    ]
    assert answer.json()[2]["fields"][0] == "referral.content"
    operator = {"X-Operator-Token": api.app.state.operator_token}
    assert (await api.client.get("/v1/audit", params=params, headers=operator)).json() == (
        answer.json()
    )

    refused = {
        "the partner that read": (api.as_("org-hk-1"), 404),
        "another partner": (api.as_("org-sg"), 404),
        "a lawyer": (api.as_person("org-hk-1"), 404),
        "the programme role": (api.as_person("org-admin", "person-p", Role.PROGRAMME), 403),
        "an unknown key": ({"X-API-Key": "lk_unknown"}, 401),
        "a wrong operator token": ({"X-Operator-Token": "wrong"}, 401),
        "nobody": ({}, 401),
    }
    for who, (headers, status) in refused.items():
        response = await api.client.get("/v1/audit", params=params, headers=headers)
        assert response.status_code == status, who
        assert "org-hk-1" not in response.text, who
