"""Every API endpoint of the three running services, against every kind of caller who should be
refused: no key, a bad key, a revoked key, another organisation, the wrong kind of
organisation. Each gets the documented answer, as problem details, and no body holds
anything of the owner's case.

The endpoints come from each service's own OpenAPI document, so a new endpoint fails
this test until its row is added to EXPECTED; request bodies are the documented
examples, so a write that should be refused would really change something if it were
let through. The owner's own reads are the control: the same ids answer 200 for her.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from lintas_intake.domain.organisation import OrganisationKind
from lintas_tools.organisations import Directories, OrganisationAdmin

from tests.e2e.conftest import E2E_PEPPER, Stack
from tests.support.fixtures import example_case
from tests.support.kafka import eventually
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

REFUSED = ("none", "bad", "revoked", "foreign", "wrong_kind")
UNAUTHENTICATED = {"none": 401, "bad": 401, "revoked": 401}


def row(foreign: int, wrong_kind: int, owner: int | None = None) -> dict[str, int]:
    """The documented answers of one endpoint; `owner` for the control reads."""
    answers = {**UNAUTHENTICATED, "foreign": foreign, "wrong_kind": wrong_kind}
    return answers | ({"owner": owner} if owner is not None else {})


# For intake, "foreign" is another NGO and "wrong_kind" a legal partner's key; for
# referral, another legal partner and an NGO's key (referral knows only partners); for
# notify's provider endpoints, which take one provider token (no organisations), an API
# key where the token should be.
EXPECTED: dict[str, dict[tuple[str, str], dict[str, int]]] = {
    "intake": {
        ("POST", "/v1/cases"): row(201, 403),  # another NGO files its own case
        ("POST", "/v1/cases/batch"): row(200, 403),  # another NGO files its own batch
        ("GET", "/v1/cases"): row(200, 200),  # lists its own: none of the owner's
        ("GET", "/v1/cases/{case_id}"): row(404, 404, owner=200),
        ("PATCH", "/v1/cases/{case_id}"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/notes"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/documents"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/consents"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/consents/{consent_id}/withdraw"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/sms-preference"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/close"): row(404, 404),
        ("POST", "/v1/cases/{case_id}/erase"): row(404, 404),
        ("GET", "/v1/cases/{case_id}/timeline"): row(404, 404, owner=200),
        ("GET", "/v1/audit"): row(404, 404),  # admins only
        ("GET", "/v1/reports/indicators"): row(200, 404),  # an NGO's own figures
    },
    "referral": {
        ("GET", "/v1/referrals"): row(200, 401),
        ("GET", "/v1/referrals/{referral_id}"): row(404, 401, owner=200),
        ("GET", "/v1/referrals/{referral_id}/content-key"): row(404, 401, owner=200),
        ("POST", "/v1/referrals/{referral_id}/accept"): row(404, 401),
        ("POST", "/v1/referrals/{referral_id}/decline"): row(404, 401),
        ("POST", "/v1/referrals/{referral_id}/progress"): row(404, 401),
        ("POST", "/v1/referrals/{referral_id}/close"): row(404, 401),
        ("POST", "/v1/referrals/{referral_id}/hand-on"): row(404, 401),
        ("PUT", "/v1/webhook"): row(200, 401),  # its own webhook
        # Its own webhook's secret (registered by the row above, so there is one).
        ("POST", "/v1/webhook/rotate-secret"): row(200, 401),
        ("GET", "/v1/referrals/{referral_id}/deliveries"): row(404, 401, owner=200),
        # Partner reads of a case: Lintas admins (console token) and operators only.
        ("GET", "/v1/audit"): row(404, 401),
        # Operators authenticate with X-Operator-Token: no organisation's key opens it.
        ("POST", "/v1/operator/webhook-deliveries/{delivery_id}/redeliver"): row(401, 401),
    },
    "notify": {
        ("POST", "/v1/inbound-sms"): {"none": 401, "bad": 401, "wrong_kind": 401},
        ("POST", "/v1/delivery-receipts"): {"none": 401, "bad": 401, "wrong_kind": 401},
    },
}


@dataclass
class World:
    """The owner's case and referral, and the keys of everyone else."""

    headers: dict[str, dict[str, dict[str, str]]]  # service -> caller -> headers
    params: dict[str, str]  # path parameters
    secrets: list[str]  # what no refused caller may ever see


async def _keys(stack: Stack, servers: Servers) -> dict[str, str]:
    admin = OrganisationAdmin(
        Directories(
            servers.mongodb_uri, stack.databases["intake"], stack.databases["referral"], E2E_PEPPER
        )
    )
    try:
        other_ngo = await admin.create(
            f"Another NGO {uuid.uuid4().hex[:6]}", OrganisationKind.NGO, "ID", ("id",), (), None
        )
        revoked = {}
        for name, organisation_id in (("ngo", "org-demo-ngo-id"), ("legal", "org-demo-legal-hk")):
            issued = await admin.issue_key(organisation_id)
            await admin.revoke_key(organisation_id, issued["key_id"])
            revoked[name] = issued["api_key"]
    finally:
        await admin.close()
    return {
        "other_ngo": other_ngo["api_key"],
        "revoked_ngo": revoked["ngo"],
        "revoked_legal": revoked["legal"],
    }


@pytest.fixture
async def world(stack: Stack, servers: Servers) -> World:
    keys = await _keys(stack, servers)
    owner_ngo = {"X-API-Key": stack.keys["ngo_id"]}
    owner_legal = {"X-API-Key": stack.keys["legal_hk"]}
    doc = example_case(external_ref=f"MATRIX-{uuid.uuid4()}")
    # Her own name and phone, so that finding them anywhere else can only be a leak.
    doc["worker"] |= {
        "full_name": f"Matrix Owner {uuid.uuid4().hex[:8]}",
        "phone": f"+62812{random.randrange(10**7):07d}",
    }
    async with (
        httpx.AsyncClient(base_url=stack.urls["intake"], timeout=20) as intake,
        httpx.AsyncClient(base_url=stack.urls["referral"], timeout=20) as referral,
    ):
        created = await intake.post("/v1/cases", json=doc, headers=owner_ngo)
        assert created.status_code == 201, created.text
        case = (await intake.get(f"/v1/cases/{created.json()['id']}", headers=owner_ngo)).json()

        async def offered() -> dict[str, Any] | None:
            listed = (await referral.get("/v1/referrals", headers=owner_legal)).json()
            return next((r for r in listed if r["case_id"] == case["id"]), None)

        offer = await eventually(offered, timeout=90)
        assert isinstance(offer, dict)
    bad = {"X-API-Key": "lk_" + uuid.uuid4().hex}
    return World(
        headers={
            "intake": {
                "owner": owner_ngo,
                "none": {},
                "bad": bad,
                "revoked": {"X-API-Key": keys["revoked_ngo"]},
                "foreign": {"X-API-Key": keys["other_ngo"]},
                "wrong_kind": owner_legal,
            },
            "referral": {
                "owner": owner_legal,
                "none": {},
                "bad": bad,
                "revoked": {"X-API-Key": keys["revoked_legal"]},
                "foreign": {"X-API-Key": stack.keys["legal_sg"]},
                "wrong_kind": owner_ngo,
            },
            "notify": {
                "none": {},
                "bad": {"X-Lintas-Provider-Token": "not-the-token"},
                "wrong_kind": owner_ngo,
            },
        },
        params={
            "case_id": case["id"],
            "consent_id": case["consents"][0]["id"],
            "referral_id": offer["id"],
            "delivery_id": f"{offer['id']}:missing",
        },
        secrets=[
            case["id"],
            case["reference"],
            doc["external_ref"],
            doc["worker"]["full_name"],
            doc["worker"]["phone"],
            offer["id"],
        ],
    )


def _example_body(spec: dict[str, Any], operation: dict[str, Any]) -> Any:
    """The operation's documented request example (route-level, else the schema's)."""
    body = operation.get("requestBody")
    if body is None:
        return None
    media = body["content"]["application/json"]
    if "examples" in media:
        return next(iter(media["examples"].values()))["value"]
    if "example" in media:
        return media["example"]
    schema = media["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema.get("examples")
    assert examples, f"{operation.get('operationId')}: document a request example"
    return examples[0]


#: Bodies other than the documented example: the webhook example's host is a real name,
#: which referral resolves before it accepts it, and these machines resolve no names
#: beyond the package registries; the test stack accepts loopback receivers instead.
BODY_OVERRIDES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/webhook"): {"url": "http://127.0.0.1:9/lintas/referrals"},
}


def _query(path: str, params: dict[str, str]) -> dict[str, str]:
    return {"case_id": params["case_id"]} if path == "/v1/audit" else {}


async def test_every_endpoint_refuses_every_wrong_caller_as_documented(
    stack: Stack, world: World
) -> None:
    checked = 0
    for service, expected in EXPECTED.items():
        async with httpx.AsyncClient(base_url=stack.urls[service], timeout=20) as client:
            spec = (await client.get("/openapi.json")).json()
            documented = {
                (method.upper(), path)
                for path, operations in spec["paths"].items()
                if path.startswith("/v1/") and path != "/v1/asyncapi.json"
                for method in operations
            }
            assert documented == set(expected), f"{service}: endpoints and EXPECTED differ"
            for (method, template), answers in expected.items():
                operation = spec["paths"][template][method.lower()]
                body = BODY_OVERRIDES.get((method, template)) or _example_body(spec, operation)
                path = template.format(**world.params)
                for caller, status in answers.items():
                    headers = dict(world.headers[service][caller])
                    if method == "PATCH":
                        headers["If-Match"] = '"1"'
                    response = await client.request(
                        method,
                        path,
                        headers=headers,
                        params=_query(template, world.params),
                        **({} if body is None else {"json": body}),
                    )
                    where = f"{service} {method} {template} as {caller}"
                    assert response.status_code == status, f"{where}: {response.text[:300]}"
                    assert str(response.status_code) in operation["responses"], (
                        f"{where}: {response.status_code} is not documented"
                    )
                    if status >= 400:
                        assert response.headers["content-type"] == "application/problem+json"
                    if caller != "owner":
                        leaked = [s for s in world.secrets if s in response.text]
                        assert not leaked, f"{where}: the owner's data in the answer"
                    checked += 1
    assert checked > 100
