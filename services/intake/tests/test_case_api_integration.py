"""The case API in-process, on the real store and broker: auth, errors, scoping, events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.bootstrap import create_app
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_intake.settings import IntakeSettings
from lintas_shared.envelope import from_kafka_record
from lintas_shared.events import CaseSubmitted, parse_payload
from lintas_shared.http import PROBLEM_JSON
from lintas_shared.mongo import make_mongo_client
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import CASES

from tests.support.fixtures import EXAMPLE_CASE, example_case
from tests.support.kafka import collect
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"


@dataclass
class Api:
    client: httpx.AsyncClient
    ngo_key: str
    other_ngo_key: str
    admin_key: str
    legal_key: str


@pytest.fixture
async def api(servers: Servers, database_name: str) -> AsyncIterator[Api]:
    settings = IntakeSettings(
        common=CommonSettings(
            kafka_bootstrap=servers.kafka_bootstrap,
            mongodb_uri=servers.mongodb_uri,
            topic_partitions=3,
            api_key_pepper=PEPPER,
        ),
        database=database_name,
        consumer_group=f"test-intake-{uuid.uuid4()}",
        max_body_bytes=20_000,
    )  # type: ignore[arg-type]
    keys = {name: f"key-{name}-{uuid.uuid4()}" for name in ("ngo", "other", "admin", "legal")}
    mongo = make_mongo_client(servers.mongodb_uri, app_name="test-seed")
    directory = MongoOrganisationDirectory(mongo[database_name]["organisations"], PEPPER)
    for name, kind in (("ngo", "ngo"), ("other", "ngo"), ("admin", "admin"), ("legal", "legal")):
        await directory.upsert(
            Organisation(f"org-{name}", name, OrganisationKind(kind), "ID"), [keys[name]]
        )
    await mongo.close()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield Api(client, keys["ngo"], keys["other"], keys["admin"], keys["legal"])


async def create(
    api: Api, doc: dict[str, object] | None = None, key: str | None = None
) -> httpx.Response:
    return await api.client.post(
        "/v1/cases",
        json=doc or example_case(external_ref=f"NGO-{uuid.uuid4()}"),
        headers={"X-API-Key": key or api.ngo_key},
    )


async def test_submitting_the_example_answers_201_and_publishes_one_event(
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
    event = from_kafka_record(record.value, record.headers)
    payload = parse_payload(event, CaseSubmitted)
    assert (payload.case_id, payload.reference) == (body["id"], body["reference"])
    assert b"Contoh Pekerja" not in (record.value or b"")


async def test_missing_or_unknown_key_answers_401(api: Api) -> None:
    no_key = await api.client.post("/v1/cases", json=EXAMPLE_CASE)
    bad_key = await create(api, key="not-a-key")
    for response in (no_key, bad_key):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["www-authenticate"] == "ApiKey"


async def test_invalid_fields_answer_422_naming_each_field(api: Api) -> None:
    doc = example_case(external_ref="NGO-bad")
    doc["worker"]["phone"] = "0812 3456 7890"
    doc["claims"][0]["amount"]["value"] = 12000.5
    doc["employment"]["country"] = "XX"
    response = await create(api, doc)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    fields = {e["field"] for e in response.json()["errors"]}
    assert {"worker.phone", "claims[0].amount.value", "employment.country"} <= fields
    # Errors name the field without echoing the personal value back.
    assert "0812 3456 7890" not in response.text


async def test_another_organisations_case_answers_404(api: Api) -> None:
    created = (await create(api)).json()
    own = await api.client.get(f"/v1/cases/{created['id']}", headers={"X-API-Key": api.ngo_key})
    foreign = await api.client.get(
        f"/v1/cases/{created['id']}", headers={"X-API-Key": api.other_ngo_key}
    )
    admin = await api.client.get(f"/v1/cases/{created['id']}", headers={"X-API-Key": api.admin_key})
    assert own.status_code == 200
    assert own.json()["case"]["worker"]["full_name"] == "Contoh Pekerja"
    assert foreign.status_code == 404
    assert "Contoh" not in foreign.text
    assert admin.status_code == 200


async def test_only_ngos_submit_cases(api: Api) -> None:
    assert (await create(api, key=api.legal_key)).status_code == 403


async def test_reused_external_ref_answers_409_naming_the_case(api: Api) -> None:
    doc = example_case(external_ref=f"NGO-{uuid.uuid4()}")
    first = (await create(api, doc)).json()
    second = await create(api, doc)
    assert second.status_code == 409
    assert second.json()["existing_case_id"] == first["id"]


async def test_oversized_body_answers_413(api: Api) -> None:
    doc = example_case(external_ref="NGO-big")
    doc["claims"][0]["description"] = "x" * 30_000
    response = await create(api, doc)
    assert response.status_code == 413


async def test_docs_and_health(api: Api) -> None:
    openapi = (await api.client.get("/openapi.json")).json()
    assert "/v1/cases" in openapi["paths"]
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    asyncapi = (await api.client.get("/v1/asyncapi.json")).json()
    assert asyncapi["asyncapi"] == "3.0.0"
