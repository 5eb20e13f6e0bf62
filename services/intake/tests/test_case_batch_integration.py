"""`POST /v1/cases/batch` in-process on the real store and broker: each case gets its own
result (created, already present, refused with its fields, conflict), a batch sent again
creates nothing, and a malformed batch stores nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.bootstrap import create_app
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_intake.entrypoints.subscribers import cases_group
from lintas_intake.settings import IntakeSettings
from lintas_shared.mongo import Document
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import CASES
from pymongo import AsyncMongoClient

from tests.support.fixtures import example_case
from tests.support.kafka import collect
from tests.support.kafka_groups import start_group_at_end
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"


@asynccontextmanager
async def running_intake(
    servers: Servers, database_name: str, mongo: AsyncMongoClient[Document]
) -> AsyncIterator[httpx.AsyncClient]:
    """Intake in-process, from start-up to shutdown; `X-API-Key` of an NGO set, `legal`
    key in the `legal` header."""
    settings = IntakeSettings(
        common=CommonSettings(
            environment="dev",
            kafka_bootstrap=servers.kafka_bootstrap,
            mongodb_uri=servers.mongodb_uri,
            topic_partitions=3,
            api_key_pepper=PEPPER,  # type: ignore[arg-type]
            keyvault_database=f"{database_name}_kv",
        ),
        database=database_name,
        consumer_group=f"test-intake-{uuid.uuid4()}",
    )
    directory = MongoOrganisationDirectory(mongo[database_name]["organisations"], PEPPER)
    await directory.upsert(Organisation("org-ngo", "ngo", OrganisationKind.NGO, "ID"), ["k-ngo"])
    await directory.upsert(
        Organisation("org-legal", "legal", OrganisationKind.LEGAL, "HK"), ["k-legal"]
    )
    await start_group_at_end(servers.kafka_bootstrap, cases_group(settings.consumer_group), CASES)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://intake", headers={"X-API-Key": "k-ngo"}
        ) as http:
            yield http


@pytest.fixture
async def client(
    servers: Servers, database_name: str, mongo: AsyncMongoClient[Document]
) -> AsyncIterator[httpx.AsyncClient]:
    """A running intake (`running_intake`)."""
    async with running_intake(servers, database_name, mongo) as http:
        yield http
    await mongo.drop_database(f"{database_name}_kv")


def _item(key: str, case: dict[str, Any]) -> dict[str, Any]:
    return {"idempotency_key": key, "case": case}


async def test_each_case_of_a_batch_gets_its_own_result(
    client: httpx.AsyncClient, servers: Servers
) -> None:
    run = uuid.uuid4().hex[:8]
    good = example_case(external_ref=f"B-{run}-1")
    other = example_case(external_ref=f"B-{run}-2")
    bad = example_case(external_ref=f"B-{run}-3")
    bad["worker"] = {**bad["worker"], "phone": "0812 3456 7890"}
    taken = example_case(external_ref=f"B-{run}-1")  # good's external_ref, another key
    batch = {
        "cases": [
            _item(f"{run}-1", good),
            _item(f"{run}-2", other),
            _item(f"{run}-3", bad),
            _item(f"{run}-4", taken),
        ]
    }

    first = await client.post("/v1/cases/batch", json=batch)

    assert first.status_code == 200, first.text
    answer = first.json()
    outcomes = [r["outcome"] for r in answer["results"]]
    # good and taken race for one external_ref: exactly one of them wins it.
    assert sorted([outcomes[0], outcomes[3]]) == ["conflict", "created"]
    assert outcomes[1:3] == ["created", "refused"]
    assert [r["index"] for r in answer["results"]] == [0, 1, 2, 3]
    assert (answer["created"], answer["refused"], answer["conflict"]) == (2, 1, 1)
    assert "worker.phone" in {e["field"] for e in answer["results"][2]["errors"]}
    assert "0812 3456 7890" not in first.text  # never echoes personal values
    loser = answer["results"][3] if outcomes[3] == "conflict" else answer["results"][0]
    winner = answer["results"][0] if outcomes[3] == "conflict" else answer["results"][3]
    assert loser["existing_case_id"] == winner["id"]
    created_ids = {r["id"] for r in answer["results"] if r["outcome"] == "created"}
    listed = await client.get("/v1/cases", params={"external_ref": f"B-{run}-3"})
    assert listed.json()["items"] == []  # the refused case left nothing

    again = await client.post("/v1/cases/batch", json=batch)

    replay = again.json()
    assert again.status_code == 200
    assert replay["created"] == 0
    for before, after in zip(answer["results"], replay["results"], strict=True):
        if before["outcome"] == "created":
            assert (after["outcome"], after["id"]) == ("already_present", before["id"])
    records = await collect(
        servers.kafka_bootstrap, CASES, lambda r: r.key.decode() in created_ids, settle=2.0
    )
    assert len(records) == 2  # one `case submitted` per created case, none for replays


async def test_a_malformed_batch_is_refused_whole_and_stores_nothing(
    client: httpx.AsyncClient,
) -> None:
    run = uuid.uuid4().hex[:8]
    case = example_case(external_ref=f"M-{run}")
    for body, field in (
        ({"cases": []}, "cases"),
        ({"cases": [{"case": case}]}, "cases[0].idempotency_key"),
        ({"cases": [_item(f"{run}-{n}", case) for n in range(201)]}, "cases"),
        ({"cases": [_item(run, case)], "extra": 1}, "extra"),
    ):
        response = await client.post("/v1/cases/batch", json=body)
        assert response.status_code == 422, response.text
        assert field in {e["field"] for e in response.json()["errors"]}, response.text
    listed = await client.get("/v1/cases", params={"external_ref": f"M-{run}"})
    assert listed.json()["items"] == []


async def test_only_ngos_submit_batches(client: httpx.AsyncClient) -> None:
    case = example_case(external_ref=f"L-{uuid.uuid4().hex[:8]}")
    response = await client.post(
        "/v1/cases/batch",
        json={"cases": [_item("k", case)]},
        headers={"X-API-Key": "k-legal"},
    )
    assert response.status_code == 403


async def test_a_key_repeated_in_a_batch_creates_one_case_and_refused_cases_keep_no_key(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    run = uuid.uuid4().hex[:8]
    case = example_case(external_ref=f"R-{run}-1")
    changed = example_case(external_ref=f"R-{run}-2")
    batch = {
        "cases": [
            _item(f"{run}-1", case),
            _item(f"{run}-1", case),  # the same request twice
            _item(f"{run}-1", changed),  # the same key with another body
            _item(f"{run}-2", example_case(external_ref=f"R-{run}-1")),  # a taken external_ref
        ]
    }

    vault = mongo[f"{database_name}_kv"]["case_keys"]
    try:
        async with running_intake(servers, database_name, mongo) as client:
            response = await client.post("/v1/cases/batch", json=batch)
            kept = await vault.count_documents({})
        keys = await vault.find({}, {"_id": 1}).to_list()
    finally:
        await mongo.drop_database(f"{database_name}_kv")

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["outcome"] for r in results] == [
        "created",
        "already_present",
        "conflict",
        "conflict",
    ]
    assert results[1]["id"] == results[0]["id"]
    assert results[3]["existing_case_id"] == results[0]["id"]
    stored = await mongo[database_name]["cases"].count_documents({"external_ref": f"R-{run}-1"})
    assert stored == 1
    # Keys are stored ahead of the cases that take them (more than one while intake ran);
    # a refused case's key was not kept for it, and those unused went at shutdown.
    assert kept > 1
    assert [k["_id"] for k in keys] == [results[0]["id"]]
