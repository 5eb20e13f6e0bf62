"""The case API in-process, on the real store and broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from csv import reader as csv_reader
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.bootstrap import create_app
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_intake.entrypoints.subscribers import cases_group
from lintas_intake.handlers import CaseService, request_hash
from lintas_intake.settings import IntakeSettings
from lintas_shared import events as ev
from lintas_shared.crypto import CaseKeyMissingError, KeyVault, phone_lookup_hash
from lintas_shared.envelope import from_kafka_record
from lintas_shared.http import PROBLEM_JSON
from lintas_shared.mongo import Document
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    REFERRAL_AUDIENCE,
    PersonClaims,
    Role,
    issue_person_token,
    new_signing_key,
)
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import CASES
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from tests.support.fixtures import EXAMPLE_CASE, example_case
from tests.support.kafka import collect, eventually
from tests.support.kafka_groups import start_group_at_end
from tests.support.servers import Servers
from tests.support.tracing import recording_spans

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"
MASTER = "test-master-key"
PERSONAL = ("Contoh Pekerja", "6281234567890", "1994-05-17", "Lampung Timur", "Gaji tiga")
CONSOLE_PRIVATE, CONSOLE_PUBLIC = new_signing_key()


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    keys: dict[str, str]
    keyvault: str

    def h(self, who: str = "ngo", **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who], **extra}

    def person(
        self,
        role: Role = Role.CASEWORKER,
        who: str = "ngo",
        person_id: str = "person-ngo-1",
        **extra: str,
    ) -> dict[str, str]:
        """Headers of a person of organisation `who`, as the console sends them."""
        claims = PersonClaims(f"org-{who}", person_id, role)
        token = issue_person_token(CONSOLE_PRIVATE, claims, INTAKE_AUDIENCE)
        return {"Authorization": f"Bearer {token}", **extra}

    @property
    def service(self) -> CaseService:
        service: CaseService = self.app.state.service
        return service


@pytest.fixture
async def api(
    servers: Servers, database_name: str, mongo: AsyncMongoClient[Document]
) -> AsyncIterator[Api]:
    keyvault = f"{database_name}_kv"
    settings = IntakeSettings(
        common=CommonSettings(
            kafka_bootstrap=servers.kafka_bootstrap,
            mongodb_uri=servers.mongodb_uri,
            topic_partitions=3,
            api_key_pepper=PEPPER,
            master_key=MASTER,  # type: ignore[arg-type]
            keyvault_database=keyvault,
            http_max_body_bytes=20_000,
            console_public_key=CONSOLE_PUBLIC,
        ),
        database=database_name,
        consumer_group=f"test-intake-{uuid.uuid4()}",
    )
    keys = {name: f"key-{name}-{uuid.uuid4()}" for name in ("ngo", "other", "admin", "legal")}
    directory = MongoOrganisationDirectory(mongo[database_name]["organisations"], PEPPER)
    for name, kind in (("ngo", "ngo"), ("other", "ngo"), ("admin", "admin"), ("legal", "legal")):
        await directory.upsert(
            Organisation(f"org-{name}", name, OrganisationKind(kind), "ID"), [keys[name]]
        )
    # The cases topic is read only for notify's news: skip what earlier tests left there.
    await start_group_at_end(servers.kafka_bootstrap, cases_group(settings.consumer_group), CASES)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Api(client, app, keys, keyvault)
    await mongo.drop_database(keyvault)


async def create(
    api: Api, doc: dict[str, Any] | None = None, who: str = "ngo", **headers: str
) -> httpx.Response:
    body = doc or example_case(external_ref=f"NGO-{uuid.uuid4()}")
    return await api.client.post("/v1/cases", json=body, headers=api.h(who, **headers))


async def test_submitting_the_example_answers_201_and_publishes_one_sealed_event(
    api: Api, servers: Servers
) -> None:
    response = await create(api, EXAMPLE_CASE)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "submitted"
    assert body["reference"].startswith("LB-")
    assert response.headers["location"] == f"/v1/cases/{body['id']}"
    [record] = await collect(
        servers.kafka_bootstrap, CASES, lambda r: r.key == body["id"].encode(), settle=2.0
    )
    payload = ev.parse_payload(from_kafka_record(record.value, record.headers), ev.CaseSubmitted)
    assert (payload.case_id, payload.reference) == (body["id"], body["reference"])
    for secret in PERSONAL:
        assert secret not in (record.value or b"").decode()


async def test_the_request_span_is_the_parent_of_the_published_event(
    api: Api, servers: Servers
) -> None:
    with recording_spans() as spans:
        response = await create(api)
        assert response.status_code == 201
        case_id = response.json()["id"]
        [record] = await collect(
            servers.kafka_bootstrap, CASES, lambda r: r.key == case_id.encode()
        )
        finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind is SpanKind.SERVER]  # FastAPI's own is off
    assert request.name == "POST /v1/cases"
    assert request.attributes is not None
    assert request.attributes["lintas.case_id"] == case_id
    trace_id = format_trace_id(request.context.trace_id)

    def ids(traceparent: str) -> list[str]:
        return traceparent.split("-")[1:3]  # trace id, parent id (flags vary)

    assert ids(record.headers["ce_traceparent"]) == [
        trace_id,
        format_span_id(request.context.span_id),
    ]
    # The relay published later, in a span of the same trace under the request.
    [sent] = [
        s
        for s in finished
        if s.kind is SpanKind.PRODUCER
        and s.attributes
        and s.attributes["messaging.message.id"] == record.headers["ce_id"]
    ]
    assert sent.parent is not None
    assert sent.parent.span_id == request.context.span_id
    assert ids(record.headers["traceparent"]) == [trace_id, format_span_id(sent.context.span_id)]


async def test_idempotent_create_stores_one_case_and_one_event(api: Api, servers: Servers) -> None:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    first = await create(api, doc, **{"Idempotency-Key": "import-row-17"})
    again = await create(api, doc, **{"Idempotency-Key": "import-row-17"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = await api.client.get(
        "/v1/cases", params={"external_ref": doc["external_ref"]}, headers=api.h()
    )
    assert [c["id"] for c in listed.json()["items"]] == [first.json()["id"]]
    records = await collect(
        servers.kafka_bootstrap, CASES, lambda r: r.key == first.json()["id"].encode(), settle=2.0
    )
    assert len(records) == 1

    changed = dict(doc, claims=[{**doc["claims"][0], "type": "underpayment"}])
    conflict = await create(api, changed, **{"Idempotency-Key": "import-row-17"})
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["detail"]


async def test_an_erased_case_still_answers_its_idempotency_key(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    key = {"Idempotency-Key": f"row-{uuid.uuid4()}"}
    first = (await create(api, doc, **key)).json()
    erased = await api.client.post(f"/v1/cases/{first['id']}/erase", headers=api.h())
    assert erased.status_code == 200, erased.text
    again = await create(api, doc, **key)
    assert again.status_code == 201
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "erased")
    assert again.headers["idempotent-replayed"] == "true"
    cases = mongo[database_name]["cases"]
    assert await cases.count_documents({"idempotency_key": key["Idempotency-Key"]}) == 1


async def test_new_cases_keys_are_stored_in_the_vault_ahead_many_to_a_write(
    api: Api, mongo: AsyncMongoClient[Document]
) -> None:
    def vault_inserts() -> float:
        labels = {"collection": "case_keys", "command": "insert"}
        return REGISTRY.get_sample_value("lintas_store_commands_total", labels) or 0.0

    before = vault_inserts()
    made = [
        (await create(api, example_case(external_ref=f"NGO-{uuid.uuid4()}"))).json()
        for _ in range(5)
    ]
    assert vault_inserts() - before == 1  # was one insert a submission
    vault = KeyVault(mongo[api.keyvault]["case_keys"], MASTER)
    for case in made:  # each case's key is in the vault, under the case's id
        assert (await vault.get(case["id"])).case_id == case["id"]


async def test_missing_or_unknown_key_answers_401(api: Api) -> None:
    no_key = await api.client.post("/v1/cases", json=EXAMPLE_CASE)
    bad_key = await api.client.get("/v1/cases", headers={"X-API-Key": "not-a-key"})
    for response in (no_key, bad_key):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"worker": {"phone": "0812 3456 7890"}}, "worker.phone"),
        ({"worker": {"preferred_language": "xx"}}, "worker.preferred_language"),
        ({"worker": {"date_of_birth": "2999-01-01"}}, "worker"),
        ({"employment": {"country": "XX"}}, "employment.country"),
        ({"employment": {"sector": "mining"}}, "employment.sector"),
        ({"employment": {"ended_on": "2020-01-01"}}, "employment"),
        ({"claims": [{"type": "theft"}]}, "claims[0].type"),
        (
            {"claims": [{"type": "unpaid_wages", "amount": {"currency": "HKX", "value": "1.00"}}]},
            "claims[0].amount.currency",
        ),
        (
            {"claims": [{"type": "unpaid_wages", "amount": {"currency": "HKD", "value": "-1.00"}}]},
            "claims[0].amount.value",
        ),
        (
            {"claims": [{"type": "unpaid_wages", "amount": {"currency": "HKD", "value": "1.005"}}]},
            "claims[0].amount.value",
        ),
        (
            {"claims": [{"type": "unpaid_wages", "amount": {"currency": "HKD", "value": 12.5}}]},
            "claims[0].amount.value",
        ),
        ({"consent": {"purposes": ["legal_referral"]}}, "consent.text_version"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_each_invalid_field_is_named_and_nothing_is_stored(
    api: Api, change: dict[str, Any], field: str
) -> None:
    doc = example_case(external_ref=f"NGO-bad-{uuid.uuid4()}")
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict) and key != "consent":
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    response = await create(api, doc)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert field in {e["field"] for e in response.json()["errors"]}
    assert "0812 3456 7890" not in response.text  # never echoes personal values
    listed = await api.client.get(
        "/v1/cases", params={"external_ref": doc["external_ref"]}, headers=api.h()
    )
    assert listed.json()["items"] == []


async def test_oversized_body_answers_413(api: Api) -> None:
    doc = example_case(external_ref="NGO-big")
    doc["claims"][0]["description"] = "x" * 30_000
    assert (await create(api, doc)).status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json"])
async def test_deep_nesting_answers_400_on_every_endpoint_whatever_the_content_type(
    api: Api, content_type: str | None
) -> None:
    deep = b'{"claims": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    headers = api.h(**({"Content-Type": content_type} if content_type else {}))
    schema = (await api.client.get("/openapi.json")).json()
    with_bodies = [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert ("POST", "/v1/cases") in with_bodies
    for method, path in with_bodies:
        answer = await api.client.request(method, path, content=deep, headers=headers)
        assert (method, path, answer.status_code) == (method, path, 400)
        assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await api.client.get("/v1/cases", headers=api.h())).json()["items"] == []


async def test_etag_and_if_match_guard_corrections(api: Api) -> None:
    case = (await create(api)).json()
    url = f"/v1/cases/{case['id']}"
    read = await api.client.get(url, headers=api.h())
    etag = read.headers["etag"]
    change = {"worker": {"phone": "+6281298765432"}}
    assert (await api.client.patch(url, json=change, headers=api.h())).status_code == 428
    stale = await api.client.patch(url, json=change, headers=api.h(**{"If-Match": '"99"'}))
    assert stale.status_code == 412
    ok = await api.client.patch(url, json=change, headers=api.h(**{"If-Match": etag}))
    assert ok.status_code == 200, ok.text
    assert ok.json()["case"]["worker"]["phone"] == "+6281298765432"
    assert ok.headers["etag"] != etag
    again = await api.client.patch(url, json=change, headers=api.h(**{"If-Match": etag}))
    assert again.status_code == 412
    bad = await api.client.patch(
        url, json={"worker": {"phone": "123"}}, headers=api.h(**{"If-Match": ok.headers["etag"]})
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["worker.phone"]
    immutable = await api.client.patch(
        url, json={"external_ref": "x"}, headers=api.h(**{"If-Match": ok.headers["etag"]})
    )
    assert immutable.status_code == 422


def endpoints(case_id: str, consent_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every case endpoint with a valid body."""
    document = {
        "kind": "payslip",
        "file_name": "slip.pdf",
        "sha256": "a" * 64,
        "size": 10,
        "location": "drive://ngo/slip.pdf",
    }
    return [
        ("GET", f"/v1/cases/{case_id}", None),
        ("PATCH", f"/v1/cases/{case_id}", {"worker": {"phone": "+6281298765432"}}),
        ("POST", f"/v1/cases/{case_id}/notes", {"text": "note"}),
        ("POST", f"/v1/cases/{case_id}/documents", document),
        ("POST", f"/v1/cases/{case_id}/consents", EXAMPLE_CASE["consent"]),
        ("POST", f"/v1/cases/{case_id}/consents/{consent_id}/withdraw", None),
        ("POST", f"/v1/cases/{case_id}/sms-preference", {"opted_out": True}),
        ("POST", f"/v1/cases/{case_id}/close", {"outcome": "settled"}),
        ("GET", f"/v1/cases/{case_id}/timeline", None),
        ("POST", f"/v1/cases/{case_id}/erase", None),
    ]


async def test_every_endpoint_answers_404_to_another_organisation(api: Api) -> None:
    case = (await create(api)).json()
    own = (await api.client.get(f"/v1/cases/{case['id']}", headers=api.h())).json()
    consent_id = own["consents"][0]["id"]
    for who in ("other", "legal"):
        for method, url, body in endpoints(case["id"], consent_id):
            response = await api.client.request(
                method, url, json=body, headers=api.h(who, **{"If-Match": '"1"'})
            )
            assert response.status_code == 404, (who, method, url, response.text)
            assert "Contoh" not in response.text
            assert case["reference"] not in response.text
        listed = await api.client.get("/v1/cases", headers=api.h(who))
        assert case["id"] not in listed.text
    for method, url, body in endpoints(case["id"], consent_id):
        response = await api.client.request(method, url, json=body)
        assert response.status_code == 401, (method, url)
    # And the owner still sees an untouched case.
    after = await api.client.get(f"/v1/cases/{case['id']}", headers=api.h())
    assert after.json()["version"] == own["version"]
    assert (await create(api, who="legal")).status_code == 403


async def test_notes_documents_consents_and_close(api: Api) -> None:
    case = (await create(api)).json()
    url = f"/v1/cases/{case['id']}"
    note = await api.client.post(
        f"{url}/notes", json={"text": "Called her sister"}, headers=api.h()
    )
    assert note.status_code == 201
    doc = await api.client.post(
        f"{url}/documents",
        headers=api.h(),
        json={
            "kind": "payslip",
            "file_name": "slip.pdf",
            "sha256": "b" * 64,
            "size": 2048,
            "location": "drive://ngo/slip.pdf",
        },
    )
    assert doc.status_code == 201, doc.text
    consent = await api.client.post(
        f"{url}/consents",
        headers=api.h(),
        json={**EXAMPLE_CASE["consent"], "share_with_countries": ["SG"]},
    )
    assert consent.status_code == 201
    withdrawn = await api.client.post(
        f"{url}/consents/{consent.json()['id']}/withdraw", headers=api.h()
    )
    assert withdrawn.status_code == 200
    closed = await api.client.post(
        f"{url}/close",
        headers=api.h(),
        json={
            "outcome": "recovered",
            "amounts_recovered": [{"currency": "HKD", "value": "9000.00"}],
        },
    )
    assert closed.status_code == 200
    view = closed.json()
    assert view["status"] == "closed"
    assert [n["text"] for n in view["notes"]] == ["Called her sister"]
    assert view["documents"][0]["sha256"] == "b" * 64
    assert [c["active"] for c in view["consents"]] == [True, False]
    assert view["outcome"]["amounts_recovered"] == [{"currency": "HKD", "value": "9000.00"}]
    late = await api.client.post(f"{url}/notes", json={"text": "late"}, headers=api.h())
    assert late.status_code == 409
    timeline = (await api.client.get(f"{url}/timeline", headers=api.h())).json()["entries"]
    assert [e["type"] for e in timeline] == [
        ev.CaseSubmitted.TYPE,
        "case.note_added",
        "case.document_recorded",
        ev.ConsentRecorded.TYPE,
        ev.ConsentWithdrawn.TYPE,
        ev.CaseClosed.TYPE,
    ]


async def test_erasure_leaves_nothing_recoverable_in_the_store_or_in_kafka(
    api: Api, servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    body = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    body["consent"] = {**body["consent"], "taken_by": "caseworker-Wulandari"}
    case = (await create(api, body)).json()
    url = f"/v1/cases/{case['id']}"
    await api.client.post(f"{url}/notes", json={"text": "Lives near the harbour"}, headers=api.h())
    await api.client.patch(
        url, json={"worker": {"phone": "+6281298765432"}}, headers=api.h(**{"If-Match": '"2"'})
    )
    location = "drive://ngo/Wulandari-Kowloon/payslip.pdf"
    document = {"kind": "payslip", "file_name": "payslip.pdf", "sha256": "ab" * 32}
    added = await api.client.post(
        f"{url}/documents", json={**document, "size": 10, "location": location}, headers=api.h()
    )
    assert added.status_code == 201, added.text
    # Sealed while the case lives: who took the consent, her gender, where a file is.
    raw = await mongo[database_name]["cases"].find_one({"_id": case["id"]})
    assert raw is not None
    assert raw["submission"]["worker"]["gender"].startswith("enc:v1:")
    assert raw["submission"]["consent"]["taken_by"].startswith("enc:v1:")
    assert raw["consents"][0]["consent"]["taken_by"].startswith("enc:v1:")
    assert raw["documents"][0]["location"].startswith("enc:v1:")
    for secret in ("Wulandari", "Kowloon"):
        assert secret not in str(raw)
    view = (await api.client.get(url, headers=api.h())).json()
    assert view["documents"][0]["location"] == location
    assert view["case"]["worker"]["gender"] == "female"
    assert view["consents"][0]["consent"]["taken_by"] == "caseworker-Wulandari"
    # A partner's decline: its words arrive sealed with the case's key (in clear in
    # `reason` on records from before). The caseworker reads them on the timeline; the
    # store keeps them sealed with the case's key.
    case_key = await KeyVault(mongo[api.keyvault]["case_keys"], MASTER).get(case["id"])
    reasons = ("we acted for Wulandari's agency", "Wulandari's employer is our client")
    for n, words in enumerate(
        ({"note": case_key.encrypt(ev.PARTNER_NOTE_FIELD, reasons[0])}, {"reason": reasons[1]})
    ):
        declined = ev.ReferralDeclined(
            referral_id=f"r{n}-{case['id']}",
            case_id=case["id"],
            partner_organisation_id="p-hk",
            country="HK",
            at=datetime.now(UTC),
            **words,
        )
        await api.service.apply_news(
            ev.make_event(declined, source="/lintas/referral", subject=case["id"])
        )
    timeline = (await api.client.get(f"{url}/timeline", headers=api.h())).json()["entries"]
    assert [e["summary"] for e in timeline if e["type"] == ev.ReferralDeclined.TYPE] == [
        f"declined: {reason}" for reason in reasons
    ]
    raw = await mongo[database_name]["cases"].find_one({"_id": case["id"]})
    assert "Wulandari" not in str(raw)
    erased = await api.client.post(f"{url}/erase", headers=api.h())
    assert erased.status_code == 200
    assert erased.json()["status"] == "erased"
    assert erased.json()["case"] is None
    assert (await api.client.get(url, headers=api.h())).json()["case"] is None

    raw = await mongo[database_name]["cases"].find_one({"_id": case["id"]})
    assert raw is not None
    # Nothing derived from the request body (its hash could confirm a guessed body).
    body_hash = request_hash(body)
    phone_hashes = [
        phone_lookup_hash(phone, CommonSettings().phone_hash_key.get_secret_value())
        for phone in ("+6281234567890", "+6281298765432")
    ]
    for secret in (*PERSONAL, "harbour", "6281298765432", "Wulandari", body_hash):
        assert secret not in str(raw)
    assert raw.get("request_hash") is None
    assert await mongo[api.keyvault]["case_keys"].find_one({"_id": case["id"]}) is None

    records = await collect(
        servers.kafka_bootstrap, CASES, lambda r: r.key == case["id"].encode(), count=3, settle=2.0
    )
    types = [r.headers["ce_type"] for r in records]
    assert types == [ev.CaseSubmitted.TYPE, ev.CaseDetailsCorrected.TYPE, ev.CaseErased.TYPE]
    submitted = ev.parse_payload(
        from_kafka_record(records[0].value, records[0].headers), ev.CaseSubmitted
    )
    vault = KeyVault(mongo[api.keyvault]["case_keys"], MASTER)
    with pytest.raises(CaseKeyMissingError):
        await vault.get(case["id"])
    for record in records:
        # No phone, and no hash of it anyone could recompute (the one-key phone hash).
        for secret in (*PERSONAL, "6281298765432", *phone_hashes, "Wulandari", body_hash):
            assert secret not in (record.value or b"").decode()
    assert submitted.worker.phone.startswith("enc:v1:")  # sealed, and the key is gone


async def test_admin_reads_are_audited_and_tampering_is_detected(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    case = (await create(api)).json()
    await api.client.get(
        f"/v1/cases/{case['id']}", headers=api.h("admin"), params={"reason": "quality review"}
    )
    await api.client.get(f"/v1/cases/{case['id']}", headers=api.h())
    entries = (
        await api.client.get("/v1/audit", params={"case_id": case["id"]}, headers=api.h("admin"))
    ).json()
    assert [(e["organisation_id"], e["action"], e["reason"]) for e in entries] == [
        ("org-admin", "read", "quality review"),
        ("org-ngo", "read", None),
    ]
    assert (
        await api.client.get("/v1/audit", params={"case_id": case["id"]}, headers=api.h())
    ).status_code == 404
    trail = api.app.state.audit
    assert (await trail.verify()).intact
    await mongo[database_name]["audit"].update_one(
        {"_id": entries[0]["seq"]}, {"$set": {"reason": "nothing to see"}}
    )
    report = await trail.verify()
    assert not report.intact
    assert report.first_broken_seq == entries[0]["seq"]


async def test_indicators_match_a_hand_counted_fixture(api: Api) -> None:
    api.app.state.indicators_min_cell = 1  # these few cases, unsuppressed
    t0 = datetime.now(UTC)
    hk1 = (await create(api)).json()
    hk2 = (await create(api)).json()
    sg_doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    sg_doc["employment"] = {**sg_doc["employment"], "country": "SG", "sector": "construction"}
    sg_doc["claims"] = [{"type": "wrongful_dismissal"}, {"type": "unpaid_wages"}]
    sg = (await create(api, sg_doc)).json()
    other = (await create(api, who="other")).json()  # another NGO's: not in the NGO's report
    for case, hours in ((hk1, 10), (hk2, 30)):
        submitted = datetime.fromisoformat(case["submitted_at"])
        await api.service.apply_news(
            ev.make_event(
                ev.ReferralOffered(
                    referral_id=f"r-{case['id']}",
                    case_id=case["id"],
                    partner_organisation_id="p-hk",
                    country="HK",
                    offered_at=submitted,
                ),
                source="/lintas/referral",
                subject=case["id"],
            )
        )
        await api.service.apply_news(
            ev.make_event(
                ev.ReferralAccepted(
                    referral_id=f"r-{case['id']}",
                    case_id=case["id"],
                    partner_organisation_id="p-hk",
                    country="HK",
                    at=submitted,
                ),
                source="/lintas/referral",
                subject=case["id"],
            ).model_copy(update={"time": submitted + timedelta(hours=hours)})
        )
    await api.client.post(
        f"/v1/cases/{hk1['id']}/close",
        headers=api.h(),
        json={
            "outcome": "recovered",
            "amounts_recovered": [{"currency": "HKD", "value": "9000.50"}],
        },
    )
    await api.client.post(
        f"/v1/cases/{sg['id']}/close",
        headers=api.h(),
        json={
            "outcome": "settled",
            "amounts_recovered": [
                {"currency": "SGD", "value": "1200.00"},
                {"currency": "HKD", "value": "100.25"},
            ],
        },
    )
    window = {
        "from": (t0 - timedelta(seconds=1)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }
    report = (await api.client.get("/v1/reports/indicators", params=window, headers=api.h())).json()
    assert report["cases"] == 3
    assert report["cases_by"]["status"] == {"accepted": 1, "closed": 2}
    assert report["cases_by"]["employment_country"] == {"HK": 2, "SG": 1}
    assert report["cases_by"]["claim_type"] == {"unpaid_wages": 3, "wrongful_dismissal": 1}
    assert report["referrals"] == {
        "offered": 2,
        "accepted": 2,
        "declined": 0,
        "median_hours_submission_to_acceptance": 20.0,
    }
    assert report["closed_by_outcome"] == {"recovered": 1, "settled": 1}
    assert report["amounts_recovered"] == {"HKD": "9100.75", "SGD": "1200.00"}
    admin = (
        await api.client.get("/v1/reports/indicators", params=window, headers=api.h("admin"))
    ).json()
    assert admin["cases"] == 4
    assert admin["cases_by"]["organisation"] == {"org-ngo": 3, "org-other": 1}
    assert other["id"]
    csv = await api.client.get(
        "/v1/reports/indicators", params={**window, "format": "csv"}, headers=api.h()
    )
    assert csv.headers["content-type"].startswith("text/csv")
    assert "amount_recovered,HKD,9100.75" in csv.text


async def test_docs_and_health(api: Api) -> None:
    openapi = (await api.client.get("/openapi.json")).json()
    for path in (
        "/v1/cases",
        "/v1/cases/{case_id}",
        "/v1/cases/{case_id}/erase",
        "/v1/cases/{case_id}/timeline",
        "/v1/reports/indicators",
    ):
        assert path in openapi["paths"]
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    # Ready once the store and Kafka answer and the consumer has its partitions.
    ready = await eventually(lambda: _ready(api), timeout=60)
    assert ready == {"store": True, "kafka": True, "consumers": True}
    assert (await api.client.get("/v1/asyncapi.json")).json()["asyncapi"] == "3.0.0"


async def _ready(api: Api) -> dict[str, bool] | None:
    response = await api.client.get("/readyz")
    checks: dict[str, bool] = response.json()["checks"]
    return checks if response.status_code == 200 else None


# --- people, through the console's tokens ---------------------------------------------


async def test_a_person_token_works_and_the_timeline_and_audit_name_the_person(
    api: Api,
) -> None:
    person = api.person(person_id="person-caseworker-7")
    created = await api.client.post(
        "/v1/cases", json=example_case(external_ref=f"NGO-{uuid.uuid4()}"), headers=person
    )
    assert created.status_code == 201, created.text
    url = f"/v1/cases/{created.json()['id']}"
    assert (
        await api.client.get(url, headers=api.person(person_id="person-caseworker-7"))
    ).is_success
    note = await api.client.post(
        f"{url}/notes", json={"text": "Called her"}, headers=api.person(person_id="person-8")
    )
    assert note.status_code == 201, note.text
    await api.client.post(f"{url}/notes", json={"text": "By the NGO's system"}, headers=api.h())
    case_id = created.json()["id"]
    await api.service.apply_news(
        ev.make_event(
            ev.ReferralOffered(
                referral_id="r-person",
                case_id=case_id,
                partner_organisation_id="org-legal",
                country="HK",
                offered_at=datetime.now(UTC),
            ),
            source="/lintas/referral",
            subject=case_id,
        )
    )
    await api.service.apply_news(
        ev.make_event(
            ev.ReferralAccepted(
                referral_id="r-person",
                case_id=case_id,
                partner_organisation_id="org-legal",
                country="HK",
                at=datetime.now(UTC),
                by_person_id="person-lawyer-3",
            ),
            source="/lintas/referral",
            subject=case_id,
        )
    )

    timeline = await api.client.get(f"{url}/timeline", headers=api.person(Role.PROGRAMME))
    assert timeline.status_code == 200, timeline.text
    assert [(e["summary"], e["actor"], e["person_id"]) for e in timeline.json()["entries"]] == [
        ("case submitted", "org-ngo", "person-caseworker-7"),
        ("note added", "org-ngo", "person-8"),
        ("note added", "org-ngo", None),
        ("offered", "org-legal", None),
        ("accepted", "org-legal", "person-lawyer-3"),
    ]
    audit = await api.client.get("/v1/audit", params={"case_id": case_id}, headers=api.h("admin"))
    assert [(a["action"], a["organisation_id"], a["person_id"]) for a in audit.json()] == [
        ("read", "org-ngo", "person-caseworker-7"),
        ("add_note", "org-ngo", "person-8"),
        ("add_note", "org-ngo", None),
    ]
    report = await api.app.state.audit.verify()
    assert (report.entries, report.intact, report.sealed) == (3, True, 3)


async def test_an_api_key_counts_when_both_are_sent(api: Api) -> None:
    both = api.h(**api.person(who="other"))
    body = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    created = await api.client.post("/v1/cases", json=body, headers=both)
    assert created.status_code == 201
    timeline = await api.client.get(f"/v1/cases/{created.json()['id']}/timeline", headers=api.h())
    [entry] = timeline.json()["entries"]
    assert (entry["actor"], entry["person_id"]) == ("org-ngo", None)


def _token(claims: PersonClaims, **kwargs: Any) -> str:
    return issue_person_token(CONSOLE_PRIVATE, claims, INTAKE_AUDIENCE, **kwargs)


async def test_bad_person_tokens_answer_401_like_a_bad_key(api: Api) -> None:
    caseworker = PersonClaims("org-ngo", "person-ngo-1", Role.CASEWORKER)
    stranger_private, _ = new_signing_key()
    tokens = {
        "expired": _token(caseworker, now=datetime.now(UTC) - timedelta(minutes=5)),
        "another key": issue_person_token(stranger_private, caseworker, INTAKE_AUDIENCE),
        "for referral": issue_person_token(CONSOLE_PRIVATE, caseworker, REFERRAL_AUDIENCE),
        "unknown org": _token(PersonClaims("org-nobody", "person-x", Role.CASEWORKER)),
        "too long": _token(caseworker, ttl=timedelta(hours=1)),
        "garbage": "not-a-token",
    }
    for why, token in tokens.items():
        response = await api.client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, why
        assert response.headers["content-type"] == PROBLEM_JSON, why
        assert response.headers["www-authenticate"] == "Bearer", why
        assert response.json()["title"] == "Unauthorized", why
        assert token not in response.text, why


async def test_programme_reads_and_submits_but_does_not_change_a_case(api: Api) -> None:
    programme = Role.PROGRAMME
    created = await create(api)  # the NGO's system
    url = f"/v1/cases/{created.json()['id']}"
    imported = await api.client.post(
        "/v1/cases",
        json=example_case(external_ref=f"NGO-{uuid.uuid4()}"),
        headers=api.person(programme),
    )
    assert imported.status_code == 201, imported.text
    for path in ("/v1/cases", url, f"{url}/timeline", "/v1/reports/indicators"):
        response = await api.client.get(path, headers=api.person(programme))
        assert response.status_code == 200, (path, response.text)

    closing = await api.client.post(
        f"{url}/close", json={"outcome": "settled"}, headers=api.person(programme)
    )
    assert closing.status_code == 403
    assert closing.headers["content-type"] == PROBLEM_JSON
    assert "programme role" in closing.json()["detail"]
    for method, path, body in (
        ("POST", f"{url}/notes", {"text": "x"}),
        ("POST", f"{url}/erase", None),
        ("POST", f"{url}/sms-preference", {"opted_out": True}),
        ("PATCH", url, {"worker": {"phone": "+6281298765432"}}),
    ):
        headers = api.person(programme, **{"If-Match": '"1"'})
        refused = await api.client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 403, (method, path, refused.text)
    case = (await api.client.get(url, headers=api.h())).json()
    assert (case["status"], case["notes"], case["case"] is not None) == ("submitted", [], True)
    # A caseworker of the same organisation may.
    closed = await api.client.post(
        f"{url}/close", json={"outcome": "settled"}, headers=api.person(Role.CASEWORKER)
    )
    assert closed.status_code == 200, closed.text


async def test_a_lawyer_at_intake_is_refused_as_their_legal_organisation_is(api: Api) -> None:
    case = (await create(api)).json()
    lawyer = api.person(Role.LAWYER, who="legal")
    submit = await api.client.post("/v1/cases", json=EXAMPLE_CASE, headers=lawyer)
    read = await api.client.get(f"/v1/cases/{case['id']}", headers=api.person(Role.LAWYER, "legal"))
    assert (submit.status_code, read.status_code) == (403, 404)


async def test_the_docs_show_both_ways_to_authenticate(api: Api) -> None:
    openapi = (await api.client.get("/openapi.json")).json()
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert (schemes["PersonToken"]["type"], schemes["PersonToken"]["scheme"]) == (
        "http",
        "bearer",
    )
    create_case = openapi["paths"]["/v1/cases"]["post"]
    assert {"ApiKey": []} in create_case["security"]
    assert {"PersonToken": []} in create_case["security"]
    entry = openapi["components"]["schemas"]["TimelineEntryView"]["properties"]
    assert "person_id" in entry


async def test_without_the_consoles_key_every_bearer_token_is_refused(
    servers: Servers, database_name: str
) -> None:
    settings = IntakeSettings(
        common=CommonSettings(
            kafka_bootstrap=servers.kafka_bootstrap, mongodb_uri=servers.mongodb_uri
        ),
        database=database_name,
    )
    app = create_app(settings)  # no lifespan: refused before the store is asked
    token = issue_person_token(
        CONSOLE_PRIVATE, PersonClaims("org-ngo", "person-1", Role.ADMIN), INTAKE_AUDIENCE
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        response = await client.get("/v1/cases", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "X-API-Key" in response.json()["detail"]


async def test_the_list_by_reference_and_by_nearest_deadline(api: Api) -> None:
    cases = [(await create(api)).json() for _ in range(3)]
    for case, deadline in ((cases[0], date(2026, 12, 1)), (cases[1], date(2026, 10, 15))):
        await api.service.apply_news(
            ev.make_event(
                ev.ReferralOffered(
                    referral_id=f"r-{case['id']}",
                    case_id=case["id"],
                    partner_organisation_id="org-legal",
                    country="HK",
                    offered_at=datetime.now(UTC),
                    deadline=ev.DeadlineSummary(date=deadline, basis="rule", verified=True),
                ),
                source="/lintas/referral",
                subject=case["id"],
            )
        )
    # The reference in any letter case; the deadline and whether it was verified listed.
    reference = cases[1]["reference"]
    found = await api.client.get(
        "/v1/cases", params={"sort": "deadline", "reference": reference.lower()}, headers=api.h()
    )
    assert found.status_code == 200, found.text
    [item] = found.json()["items"]
    assert (item["id"], item["deadline"], item["deadline_verified"]) == (
        cases[1]["id"],
        "2026-10-15",
        True,
    )
    other = await api.client.get(
        "/v1/cases", params={"reference": reference}, headers=api.h("other")
    )
    assert other.json()["items"] == []
    # Nearest deadline first, the case without one last, over two pages.
    first = await api.client.get(
        "/v1/cases", params={"sort": "deadline", "limit": 2}, headers=api.h()
    )
    page = first.json()
    assert [i["id"] for i in page["items"]] == [cases[1]["id"], cases[0]["id"]]
    second = await api.client.get(
        "/v1/cases",
        params={"sort": "deadline", "limit": 2, "cursor": page["next_cursor"]},
        headers=api.h(),
    )
    assert [(i["id"], i["deadline"]) for i in second.json()["items"]] == [(cases[2]["id"], None)]
    assert second.json()["next_cursor"] is None
    # A cursor pages only its own sort; a reference of another shape is refused.
    mixed = await api.client.get(
        "/v1/cases", params={"cursor": page["next_cursor"]}, headers=api.h()
    )
    assert mixed.status_code == 422, mixed.text
    assert mixed.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in mixed.json()["errors"]] == ["cursor"]
    for bad in ("LB-1234", "XX-12345", "LB-123456", "LB-12 45"):
        refused = await api.client.get("/v1/cases", params={"reference": bad}, headers=api.h())
        assert refused.status_code == 422, bad
        assert [e["field"] for e in refused.json()["errors"]] == ["reference"]
    # OpenAPI documents them.
    openapi = (await api.client.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in openapi["paths"]["/v1/cases"]["get"]["parameters"]}
    assert {"reference", "sort"} <= set(parameters)
    assert parameters["reference"]["schema"]["anyOf"][0]["maxLength"] == 8
    item_schema = openapi["components"]["schemas"]["CaseListItem"]["properties"]
    assert {"deadline", "deadline_verified"} <= set(item_schema)


# --- GEDSI indicators: who the workers are (issue 14) -------------------------------
ALL_NONE = dict.fromkeys(
    ("seeing", "hearing", "walking", "remembering", "self_care", "communicating"), "none"
)
WITH_DIFFICULTY = {**ALL_NONE, "walking": "a_lot", "remembering": "some"}


def case_doc(
    *,
    gender: str = "female",
    born: str = "1994-05-17",
    functioning: dict[str, str] | None = None,
    sector: str = "domestic_work",
    country: str = "HK",
    region: str = "Lampung Timur, Lampung",
) -> dict[str, Any]:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    doc["worker"] = {**doc["worker"], "gender": gender, "date_of_birth": born}
    doc["worker"]["home_region"] = region
    if functioning is not None:
        doc["worker"]["functioning"] = functioning
    doc["employment"] = {**doc["employment"], "sector": sector, "country": country}
    return doc


async def submit_all(api: Api, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    created = []
    for doc in docs:
        response = await create(api, doc)
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


def rows(report: dict[str, Any], name: str) -> dict[tuple[str, ...], int | None]:
    return {tuple(g["group"].values()): g["cases"] for g in report["breakdowns"][name]["groups"]}


async def test_the_report_breaks_cases_down_by_who_the_workers_are(api: Api) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    await submit_all(
        api,
        [
            # 6 women domestic workers in HK with a disability, 25-34, from Lampung
            *[case_doc(functioning=WITH_DIFFICULTY) for _ in range(6)],
            # 5 women domestic workers in HK without, 25-34, from Lampung
            *[case_doc(functioning=ALL_NONE) for _ in range(5)],
            # 2 men in construction in SG, answers not recorded, 18-24, from Jawa Timur
            *[
                case_doc(
                    gender="male",
                    born="2005-01-01",
                    sector="construction",
                    country="SG",
                    region="Malang, Jawa Timur",
                )
                for _ in range(2)
            ],
        ],
    )
    window = {"from": t0.isoformat(), "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}

    api.app.state.indicators_min_cell = 1
    exact = (await api.client.get("/v1/reports/indicators", params=window, headers=api.h())).json()
    assert exact["cases"] == 13
    assert rows(exact, "gender") == {("female",): 11, ("male",): 2}
    assert rows(exact, "age_band") == {("18-24",): 2, ("25-34",): 11}
    assert rows(exact, "disability") == {("no",): 5, ("unknown",): 2, ("yes",): 6}
    assert rows(exact, "home_province") == {("Jawa Timur",): 2, ("Lampung",): 11}
    assert rows(exact, "gender_sector_disability") == {
        ("female", "domestic_work", "no"): 5,
        ("female", "domestic_work", "yes"): 6,
        ("male", "construction", "unknown"): 2,
    }

    api.app.state.indicators_min_cell = 5  # the default
    report = (await api.client.get("/v1/reports/indicators", params=window, headers=api.h())).json()
    # Men (2) are below 5; women would give them away: both hidden.
    assert rows(report, "gender") == {("female",): None, ("male",): None}
    assert rows(report, "employment_country") == {("HK",): None, ("SG",): None}
    # Women domestic workers with a disability: 6, shown; the two small cells hidden.
    assert rows(report, "gender_sector_disability") == {
        ("female", "domestic_work", "no"): None,
        ("female", "domestic_work", "yes"): 6,
        ("male", "construction", "unknown"): None,
    }
    hidden = report["breakdowns"]["gender_age_band"]["groups"][-1]
    assert hidden["group"] == {"gender": "male", "age_band": "18-24"}
    assert (hidden["cases"], hidden["suppressed"], hidden["amounts_recovered"]) == (
        None,
        True,
        None,
    )
    assert report["suppression"]["min_cell"] == 5
    text = (
        await api.client.get(
            "/v1/reports/indicators", params={**window, "format": "csv"}, headers=api.h()
        )
    ).text
    first, *rest = text.splitlines()
    assert first.startswith("# Counts below 5 cases are suppressed and shown as <5")
    table = list(csv_reader(StringIO("\n".join(rest))))
    assert table[0] == ["indicator", "dimension", "value"]
    assert ["gender.cases", "gender=male", "<5"] in table
    assert [
        "gender_sector_disability.cases",
        "gender=female;sector=domestic_work;disability=yes",
        "6",
    ] in table
    assert "a_lot" not in text
    assert "walking" not in text


async def test_the_washington_group_answers_are_sealed_and_only_derived_facts_kept(
    api: Api, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    answers = {
        "seeing": "cannot_do",
        "hearing": "some",
        "walking": "a_lot",
        "remembering": "none",
        "self_care": "some",
        "communicating": "none",
    }
    [case] = await submit_all(api, [case_doc(functioning=answers)])
    raw = await mongo[database_name]["cases"].find_one({"_id": case["id"]})
    assert raw is not None
    sealed = raw["submission"]["worker"]["functioning"]
    assert isinstance(sealed, str)
    assert sealed.startswith("enc:")
    stored = str(raw)
    for word in ("cannot_do", "a_lot", "seeing", "walking", "self_care", "communicating"):
        assert word not in stored
    assert raw["worker_facts"] == {
        "gender": "female",
        "age_band": "25-34",
        "disability": "yes",
        "sector": "domestic_work",
        "home_province": "Lampung",
    }
    # Its own NGO reads the answers back, unchanged.
    read = (await api.client.get(f"/v1/cases/{case['id']}", headers=api.h())).json()
    assert read["case"]["worker"]["functioning"] == answers
    # Erasure forgets the derived facts with the rest.
    assert (await api.client.post(f"/v1/cases/{case['id']}/erase", headers=api.h())).is_success
    erased = await mongo[database_name]["cases"].find_one({"_id": case["id"]})
    assert erased is not None
    assert set(erased["worker_facts"].values()) == {"unknown"}


async def test_an_unknown_answer_is_refused(api: Api) -> None:
    response = await create(api, case_doc(functioning={"seeing": "blind"}))
    assert response.status_code == 422
    assert "worker.functioning.seeing" in response.text
