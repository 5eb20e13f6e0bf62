"""The documentation pages load nothing from outside the service, and OPTIONS and 405
answer with `Allow` naming every method of the resource."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from lintas_shared.docs import ASSETS_DIR, CONTENT_SECURITY_POLICY
from lintas_shared.http import install_conventions
from lintas_shared.http_guard import HttpLimits

pytestmark = pytest.mark.unit
EMPTY_ASYNCAPI = {
    "asyncapi": "3.0.0",
    "info": {"title": "t", "version": "1", "description": "d"},
    "channels": {},
    "operations": {},
    "components": {"schemas": {}, "messages": {}},
}


def _app(with_docs: bool = True) -> FastAPI:
    app = FastAPI(title="t") if with_docs else FastAPI(docs_url=None, openapi_url=None)

    async def ready() -> bool:
        return True

    install_conventions(app, {"always": ready}, HttpLimits(), asyncapi=lambda: EMPTY_ASYNCAPI)

    @app.get("/v1/things")
    async def things() -> list[str]:
        return []

    @app.post("/v1/things")
    async def add() -> dict[str, str]:
        return {}

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.post("/v1/things/batch")
    async def add_many() -> dict[str, str]:
        return {}

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_docs_name_only_their_own_assets() -> None:
    async with _client(_app()) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls
        assert all(u.startswith("/") for u in urls), urls
        assert "validatorUrl" in page.text
        for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
            asset = await client.get(f"/docs/assets/{name}")
            assert asset.status_code == 200
            assert asset.content == (ASSETS_DIR / name).read_bytes()
        assert (await client.get("/docs/assets/..%2Fhttp.py")).status_code == 404
        assert (await client.get("/redoc")).status_code == 404
        assert (await client.get("/docs/asyncapi")).status_code == 200


async def test_no_docs_where_the_app_has_none() -> None:
    async with _client(_app(with_docs=False)) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/docs/asyncapi")).status_code == 404


async def test_options_and_405_name_every_method_of_the_resource() -> None:
    async with _client(_app()) as client:
        options = await client.options("/v1/things")
        assert options.status_code == 204
        assert options.headers["allow"] == "GET, HEAD, POST, OPTIONS"
        refused = await client.delete("/v1/things")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD, POST, OPTIONS"
        assert (await client.options("/v1/nothing")).status_code == 404


async def test_a_fixed_path_is_its_own_resource_beside_a_template() -> None:
    # /v1/things/batch also matches /v1/things/{thing_id}: its Allow is its own (POST),
    # not the template's GET as well.
    async with _client(_app()) as client:
        options = await client.options("/v1/things/batch")
        assert options.headers["allow"] == "POST, OPTIONS"
        assert (await client.options("/v1/things/t1")).headers["allow"] == "GET, HEAD, OPTIONS"
