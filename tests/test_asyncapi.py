"""The AsyncAPI documents: each service's and the combined one pass the official parser,
describe every event type their service sends with its schema, and the committed
combined document and page are current."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lintas_intake.bootstrap import create_app as intake_app
from lintas_notify.bootstrap import create_app as notify_app
from lintas_referral.bootstrap import create_app as referral_app
from lintas_shared import asyncapi
from lintas_shared import events as ev
from playwright.async_api import Page, Request, Route

from tests.support.asyncapi_parser import validate

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": intake_app,
    "referral": referral_app,
    "notify": notify_app,
}
REGENERATE = "uv run python -m lintas_shared.asyncapi --write docs"


async def _served(service: str) -> Any:
    """The document the service serves, from its app (built, not started: its
    subscriptions are registered when the app is built)."""
    app = APPS[service]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/v1/asyncapi.json")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    import asyncio

    return {service: asyncio.run(_served(service)) for service in APPS}


def _ref(doc: Any, ref: str) -> Any:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_each_service_serves_the_catalogue_for_its_actual_subscriptions(
    served: dict[str, Any],
) -> None:
    for service, doc in served.items():
        expected = asyncapi.service_document(service, asyncapi.RECEIVES[service])
        assert doc == json.loads(json.dumps(expected)), (
            f"{service}'s subscriptions differ from lintas_shared.asyncapi.RECEIVES"
        )


def test_every_event_type_is_in_the_documents_of_its_senders_with_its_schema(
    served: dict[str, Any],
) -> None:
    senders = {cls for classes in asyncapi.SENDS.values() for cls in classes}
    assert senders == set(ev.EVENT_TYPES.values()), "an event type nobody sends, or unknown"
    combined = asyncapi.combined_document()
    for service, classes in asyncapi.SENDS.items():
        for doc in (served[service], combined):
            sent = {
                _ref(doc, _ref(doc, m["$ref"])["$ref"])["name"]: _ref(doc, m["$ref"])
                for op_id, op in doc["operations"].items()
                if op["action"] == "send" and op_id.startswith(f"{service}.")
                for m in op["messages"]
            }
            for cls in classes:
                assert cls.TYPE in sent, f"{cls.TYPE} missing from {service}'s sends"
                message = _ref(doc, sent[cls.TYPE]["$ref"])
                schema = _ref(doc, message["payload"]["$ref"])
                assert schema["properties"], cls.TYPE
                assert schema["required"], cls.TYPE
                assert set(schema["properties"]) == set(cls.model_fields)
                assert message["headers"]["properties"]["ce_type"]["const"] == cls.TYPE


def test_every_example_is_a_valid_event_and_dead_letters_are_described() -> None:
    doc = asyncapi.combined_document()
    for cls in ev.EVENT_TYPES.values():
        message = doc["components"]["messages"][cls.__name__]
        (example,) = message["examples"]
        cls.model_validate(example["payload"])
        headers = message["headers"]
        assert set(headers["required"]) <= set(example["headers"])
        assert example["headers"]["ce_type"] == cls.TYPE
        assert example["headers"]["ce_source"] in headers["properties"]["ce_source"]["enum"]
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    offered = doc["components"]["messages"]["ReferralOffered"]["description"]
    assert "/v1/referrals/{referral_id}/content-key" in offered
    assert "`worker.phone`" in doc["components"]["messages"]["CaseSubmitted"]["description"]
    for topic in ("lintas.cases.v1", "lintas.referrals.v1", "lintas.notifications.v1"):
        dlq = doc["channels"][f"{topic}.dlq"]
        letter = _ref(doc, dlq["messages"]["DeadLetter"]["$ref"])
        assert "lintas_dlq_reason" in letter["headers"]["required"]


def test_the_committed_combined_document_and_page_are_current() -> None:
    doc = asyncapi.combined_document()
    assert (DOCS / "asyncapi.json").read_text("utf-8") == asyncapi.dumps(doc), (
        f"docs/asyncapi.json is stale: run `{REGENERATE}` and commit it"
    )
    assert (DOCS / "asyncapi.html").read_text("utf-8") == asyncapi.render_html(doc), (
        f"docs/asyncapi.html is stale: run `{REGENERATE}` and commit it"
    )
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "docs/asyncapi.html" in readme
    assert "docs/asyncapi.json" in readme


def test_every_document_passes_the_official_parser_which_refuses_an_error(
    served: dict[str, Any], tmp_path: Path
) -> None:
    files = [DOCS / "asyncapi.json"]
    for service, doc in served.items():
        files.append(tmp_path / f"{service}.json")
        files[-1].write_text(json.dumps(doc), encoding="utf-8")
    # One run of the parser (it takes seconds): the documents, and one with an error.
    broken = asyncapi.combined_document()
    broken["channels"]["lintas.cases.v1"]["messages"]["Nope"] = {
        "$ref": "#/components/messages/Nope"
    }
    (tmp_path / "broken.json").write_text(json.dumps(broken), encoding="utf-8")
    result = validate(*files, tmp_path / "broken.json")
    output = result.stdout + result.stderr
    for file in files:
        assert f"{file}: valid AsyncAPI 3.0.0" in output, output
        assert f"{file}: error" not in output, output
    assert f"{tmp_path / 'broken.json'}: error invalid-ref" in output, output
    assert f"{tmp_path / 'broken.json'}: INVALID" in output, output
    assert result.returncode == 1, output


async def test_the_page_renders_with_nothing_loaded_from_elsewhere(page: Page) -> None:
    outside: list[str] = []

    async def block(route: Route, request: Request) -> None:
        if request.url.startswith("file://"):
            await route.continue_()
        else:
            outside.append(request.url)
            await route.abort()

    await page.route("**/*", block)
    await page.goto((DOCS / "asyncapi.html").as_uri())
    assert await page.locator("h1").inner_text() == "Lintas events 0.1.0"
    text = await page.locator("body").inner_text()
    for cls in ev.EVENT_TYPES.values():
        assert cls.TYPE in text
    assert await page.locator("section.message").count() == len(ev.EVENT_TYPES) + 3
    assert outside == []
