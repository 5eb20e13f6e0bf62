"""SSRF: webhook URLs that point inside (metadata, loopback, private ranges, however the
address is spelled) are refused at registration, on the real app; partners see only an
HTTP status class in their delivery log, never what told a closed port from an open one."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from lintas_referral import handlers
from lintas_referral.bootstrap import create_app
from lintas_referral.domain.routing import Partner
from lintas_referral.settings import ReferralSettings
from lintas_shared.crypto import KeyVault
from lintas_shared.mongo import Document
from lintas_shared.security import hash_api_key
from lintas_shared.settings import CommonSettings
from pydantic import SecretStr, ValidationError
from pymongo import AsyncMongoClient

from services.referral.tests.conftest import START, FakeClock
from tests.support.referral_cases import case, submitted
from tests.support.servers import Servers
from tests.support.webhook_resolver import FakeResolver

pytestmark = pytest.mark.integration
PEPPER = "test-pepper"
KEY = "lk_hk_one"
HEADERS = {"X-API-Key": KEY}
INTERNAL_URLS = [
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://127.0.0.1:27017/",  # the database on loopback
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.10/hook",
    "https://100.64.0.1/hook",  # CGNAT
    "https://2130706433/hook",  # 127.0.0.1 as one integer
    "https://0x7f000001/hook",  # … in hex
    "https://127.1/hook",  # … shortened
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",  # multicast
    # IPv6 literals (refused by the URL pattern already; by address when resolved below)
    "https://[::1]/hook",
    "https://[fc00::1]/hook",  # IPv6 unique-local
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "https://[::ffff:169.254.169.254]/hook",
    "https://private.partner.example/hook",  # a name whose answer is private
    "https://v6loop.partner.example/hook",  # … ::1
    "https://ula.partner.example/hook",  # … fc00::1
    "https://mapped.partner.example/hook",  # … ::ffff:127.0.0.1
    "https://mixed.partner.example/hook",  # … or has a private address among public ones
    "https://nowhere.partner.example/hook",  # a name that does not resolve
    "https://public.partner.example:99999/hook",  # no such port
    "https://public.partner.example:0/hook",
]
ANSWERS = {
    "public.partner.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    "private.partner.example": ["192.168.0.5"],
    "v6loop.partner.example": ["::1"],
    "ula.partner.example": ["fc00::1"],
    "mapped.partner.example": ["::ffff:127.0.0.1"],
    "mixed.partner.example": ["93.184.216.34", "fd12::5"],
}


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    vault: KeyVault


def _settings(servers: Servers, database_name: str, **extra: object) -> ReferralSettings:
    return ReferralSettings(
        common=CommonSettings(
            mongodb_uri=servers.mongodb_uri,
            kafka_bootstrap=servers.kafka_bootstrap,
            keyvault_database=database_name,
            api_key_pepper=SecretStr(PEPPER),
        ),
        database=database_name,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def api(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str
) -> AsyncIterator[Api]:
    settings = _settings(servers, database_name)  # the default: no loopback receivers
    app = create_app(settings)  # no lifespan: the store is all these tests need
    app.state.referrals = dataclasses.replace(app.state.referrals, clock=FakeClock())
    app.state.webhooks = dataclasses.replace(app.state.webhooks, resolver=FakeResolver(ANSWERS))
    await app.state.partners.upsert(
        Partner("org-hk-1", "org-hk-1", "HK", open_referrals=0),
        api_key_hashes=[hash_api_key(KEY, PEPPER)],
    )
    vault = KeyVault(
        mongo[database_name]["case_keys"], settings.common.master_key.get_secret_value()
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://referral") as client:
        yield Api(app, client, vault)


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_webhook_urls_pointing_inside_are_refused_naming_url(api: Api, url: str) -> None:
    answer = await api.client.put("/v1/webhook", json={"url": url}, headers=HEADERS)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["url"]
    assert await api.app.state.partners.webhook("org-hk-1") is None


async def test_a_public_name_is_accepted_and_loopback_http_only_by_setting(api: Api) -> None:
    url = "https://public.partner.example/hook"
    answer = await api.client.put("/v1/webhook", json={"url": url}, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    # Not on by default: plain http to 127.0.0.1 is refused, and the document says so.
    local = await api.client.put(
        "/v1/webhook", json={"url": "http://127.0.0.1:9999/x"}, headers=HEADERS
    )
    assert local.status_code == 422
    pattern = (await api.client.get("/openapi.json")).json()["components"]["schemas"][
        "WebhookRequest"
    ]["properties"]["url"]["pattern"]
    assert "127" not in pattern


def test_loopback_receivers_are_for_the_dev_stack_only(
    servers: Servers, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _settings(servers, database_name).webhook_allow_loopback is False
    monkeypatch.setenv("LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK", "true")
    assert _settings(servers, database_name).webhook_allow_loopback is True
    # Not this rule's business whether every other secret of a deployment is real.
    real = {
        name: SecretStr(name * 8)
        for name, info in CommonSettings.model_fields.items()
        if isinstance(info.default, SecretStr)
    }
    production = CommonSettings.model_construct(environment="production", **real)
    with pytest.raises(ValidationError, match="dev stack only"):
        ReferralSettings(common=production, operator_token=SecretStr("o" * 40))


async def test_the_delivery_log_shows_only_the_status_class(api: Api) -> None:
    key = await api.vault.create("case-log")
    await handlers.on_case_submitted(submitted(case("case-log", key=key)), api.app.state.referrals)
    routing = await api.app.state.routings.get("case-log")
    rid = str(routing.referrals[0].id)
    deliveries = api.app.state.deliveries
    await deliveries.create(
        {
            "_id": "dlv-log",
            "event_id": "evt-log",
            "event_type": "org.lintas.referral.offered",
            "case_id": "case-log",
            "referral_id": rid,
            "partner_id": "org-hk-1",
            "body": "{}",
            "state": "pending",
            "created_at": START,
            "window_started_at": START,
            "next_attempt_at": START,
            "attempts": 0,
            "attempts_in_window": 0,
            "log": [],
        }
    )
    # As attempts were stored before: the error told a closed port (ConnectError) from an
    # open one that does not speak HTTP (RemoteProtocolError).
    for n, attempt in enumerate(
        [
            {"at": START, "status_code": None, "error": "ConnectError", "ok": False},
            {"at": START, "status_code": None, "error": "RemoteProtocolError", "ok": False},
            {"at": START, "status_code": 503, "error": None, "ok": False},
            {"at": START, "status_code": 200, "status_class": "2xx", "ok": True},
        ]
    ):
        assert await deliveries.record_attempt("dlv-log", n, attempt, {"state": "pending"})
    answer = await api.client.get(f"/v1/referrals/{rid}/deliveries", headers=HEADERS)
    assert answer.status_code == 200, answer.text
    [delivery] = answer.json()
    assert [set(a) for a in delivery["log"]] == [
        {"at", "status_class", "ok", "redelivery_requested"}
    ] * 4
    assert [a["status_class"] for a in delivery["log"]] == ["no answer", "no answer", "5xx", "2xx"]
    assert "Error" not in answer.text
