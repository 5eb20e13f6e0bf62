"""Operator tools against the running services: organisations, keys, bulk import."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import httpx
import pytest
from lintas_intake.domain.organisation import OrganisationKind
from lintas_tools.import_samples import write_import_csv
from lintas_tools.importer import import_file
from lintas_tools.organisations import Directories, OrganisationAdmin

from tests.e2e.conftest import E2E_PEPPER, Stack
from tests.support.fixtures import example_case
from tests.support.kafka import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


def admin(stack: Stack, servers: Servers) -> OrganisationAdmin:
    return OrganisationAdmin(
        Directories(
            servers.mongodb_uri, stack.databases["intake"], stack.databases["referral"], E2E_PEPPER
        )
    )


async def test_a_created_organisation_submits_and_a_revoked_key_answers_401(
    stack: Stack, servers: Servers
) -> None:
    tool = admin(stack, servers)
    try:
        created = await tool.create(
            "Desbumi Wonosobo", OrganisationKind.NGO, "ID", ("id",), (), None
        )
        second = await tool.issue_key(created["id"])
        url = stack.urls["intake"]
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for key in (created["api_key"], second["api_key"]):
                response = await client.post(
                    "/v1/cases",
                    headers={"X-API-Key": key},
                    json=example_case(external_ref=str(uuid.uuid4())),
                )
                assert response.status_code == 201, response.text
            await tool.revoke_key(created["id"], created["key_id"])
            revoked = await client.get("/v1/cases", headers={"X-API-Key": created["api_key"]})
            still = await client.get("/v1/cases", headers={"X-API-Key": second["api_key"]})
        assert revoked.status_code == 401
        assert still.status_code == 200
        assert len(still.json()["items"]) == 2
        listing = {o["id"]: o for o in await tool.list()}
        keys = listing[created["id"]]["keys"]
        assert [k["revoked_at"] is not None for k in keys] == [True, False]
        assert created["api_key"] not in str(listing)
        assert second["api_key"] not in str(listing)
    finally:
        await tool.close()


async def test_bulk_import_stores_exactly_the_good_rows_once(stack: Stack, tmp_path: Path) -> None:
    rows, bad_every = 300, 33  # 9 broken rows: 3% (the 10,000-row run is in the README)
    prefix = f"IMP-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "cases.csv"
    # Consent to refer to Malaysia only and no SMS: the imported cases wait for consent,
    # so they load no partner and send no SMS on the stack the other tests share.
    bad = write_import_csv(
        path,
        rows,
        bad_every,
        prefix,
        consent_purposes="legal_referral",
        consent_share_with_countries="MY",
    )
    out = io.StringIO()
    first = await import_file(
        path,
        url=stack.urls["intake"],
        api_key=stack.keys["ngo_id"],
        report_path=tmp_path / "errors.csv",
        out=out,
    )
    assert (first.created, first.rejected, first.already_present) == (rows - len(bad), len(bad), 0)
    with (tmp_path / "errors.csv").open() as report:
        errors = list(csv.DictReader(report))
    assert {int(e["row"]) for e in errors} == set(bad)
    for row, expected_field in bad.items():
        assert expected_field in {e["field"] for e in errors if int(e["row"]) == row}
    assert "rows/s" in out.getvalue()
    assert "ETA" in out.getvalue()

    again = await import_file(
        path,
        url=stack.urls["intake"],
        api_key=stack.keys["ngo_id"],
        report_path=tmp_path / "errors-2.csv",
        out=io.StringIO(),
    )
    assert (again.created, again.already_present, again.rejected) == (0, rows - len(bad), len(bad))
    stored: list[str] = []
    cursor = None
    async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=30) as client:
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            page = (
                await client.get(
                    "/v1/cases", params=params, headers={"X-API-Key": stack.keys["ngo_id"]}
                )
            ).json()
            stored += [
                c["external_ref"] for c in page["items"] if c["external_ref"].startswith(prefix)
            ]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert len(stored) == len(set(stored)) == rows - len(bad)

    # Leave the shared stack quiet for the tests after this one: wait until routing has
    # handled every imported case.
    async def routed() -> bool:
        async with httpx.AsyncClient(base_url=stack.urls["intake"], timeout=30) as client:
            page = (
                await client.get(
                    "/v1/cases",
                    params={"status": "submitted", "limit": "200"},
                    headers={"X-API-Key": stack.keys["ngo_id"]},
                )
            ).json()
        return not any(c["external_ref"].startswith(prefix) for c in page["items"])

    await eventually(routed, timeout=240, interval=2.0)
