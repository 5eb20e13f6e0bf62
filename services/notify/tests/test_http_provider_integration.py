"""The http provider against a real local Twilio-shaped gateway."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import time
from pathlib import Path

import pytest
import uvicorn
from lintas_notify.adapters.http_provider import HttpSmsProvider
from lintas_notify.bootstrap import build, create_app
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError
from lintas_notify.settings import NotifySettings
from lintas_shared.crypto import KeyVault
from lintas_shared.envelope import to_kafka_record
from lintas_shared.mongo import Document
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import CASES
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from tests.support.fixtures import PHONE_HASH_SECRET, case_submitted
from tests.support.kafka import eventually, produce_raw
from tests.support.kafka_groups import start_group_at_end
from tests.support.notify import Notify
from tests.support.servers import Servers
from tests.support.sms_gateway import Scripted, sms_gateway

pytestmark = pytest.mark.integration


def sms(message_id: str = "msg-1", to: str = "+6281234567890") -> OutgoingSms:
    return OutgoingSms(
        id=message_id,
        case_id="case-1",
        case_reference="LB-7K3Q9",
        to=to,
        to_sealed=None,
        phone_hash="h",
        body="Lintas: Kasus Anda sudah kami terima. Nomor kasus Anda LB-7K3Q9.",
        language="id",
        template="case_received",
        encoding="GSM-7",
        segments=1,
        causing_event="/lintas/intake#e1",
    )


def provider(url: str, token: str = "gateway-secret") -> HttpSmsProvider:  # noqa: S107
    return HttpSmsProvider(url, account="ACtest", auth_token=token, sender="Lintas")


async def test_form_post_with_basic_auth_returns_the_sid() -> None:
    with sms_gateway() as (url, gateway):
        sid = await provider(url).send(sms())
        [accepted] = gateway.accepted
    assert sid == accepted["sid"]
    assert accepted["To"] == "+6281234567890"
    assert accepted["From"] == "Lintas"
    assert accepted["Body"].startswith("Lintas: Kasus Anda")
    assert accepted["key"] == "msg-1"  # the client reference travels as Idempotency-Key


async def test_a_repeated_request_with_the_same_key_sends_nothing_new() -> None:
    with sms_gateway() as (url, gateway):
        first = await provider(url).send(sms())
        again = await provider(url).send(sms())
        assert len(gateway.accepted) == 1
    assert first == again


async def test_429_with_retry_after_and_500_are_transient() -> None:
    with sms_gateway() as (url, gateway):
        gateway.script = [
            Scripted(429, {"Retry-After": "7"}, {"code": 20429, "message": "Too Many Requests"}),
            Scripted(500, {}, {"code": 20500, "message": "Internal Server Error"}),
        ]
        with pytest.raises(ProviderUnavailableError) as busy:
            await provider(url).send(sms())
        with pytest.raises(ProviderUnavailableError) as broken:
            await provider(url).send(sms())
    assert (busy.value.retry_after, busy.value.maybe_accepted) == (7.0, False)
    assert busy.value.reason == "HTTP 429 20429 Too Many Requests"
    assert broken.value.maybe_accepted is True


async def test_refusals_are_permanent_with_the_gateways_reason() -> None:
    with sms_gateway() as (url, _gateway):
        with pytest.raises(ProviderRejectedError, match="21211 Invalid 'To' Phone Number"):
            await provider(url).send(sms(to="0812"))
        with pytest.raises(ProviderRejectedError, match="HTTP 401 20003"):
            await provider(url, token="wrong").send(sms())


async def test_an_unreachable_gateway_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProviderUnavailableError, match="transport"):
        await provider(f"http://127.0.0.1:{port}").send(sms())


async def test_dispatcher_waits_as_the_gateway_asks_and_sends_once(notify: Notify) -> None:
    with sms_gateway() as (url, gateway):
        gateway.script = [
            Scripted(429, {"Retry-After": "3"}, {"code": 20429, "message": "Too Many"}),
            Scripted(500, {}, {"code": 20500, "message": "oops"}),
        ]
        notify.rewire(provider(url))
        key = await notify.vault.create("case-h")
        event = case_submitted("case-h", key=key)
        await notify.handlers.on_case_submitted(event)
        await notify.handlers.on_case_submitted(event)  # redelivered
        assert len(gateway.accepted) == 1
        assert gateway.requests == 3
    # Retry-After, then our own backoff (1 s after the second attempt, less its jitter).
    first, second = notify.sleeps.waits
    assert first == 3.0
    assert 0.5 <= second <= 1.0
    [record] = await notify.messages.for_case("case-h")
    assert record["status"] == "sent"
    assert record["provider"] == "http"
    assert record["provider_message_id"] == gateway.accepted[0]["sid"]
    errors = [h.get("error") for h in record["status_history"] if h.get("error")]
    assert errors == ["HTTP 429 20429 Too Many", "HTTP 500 20500 oops"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_gateways_status_callback_marks_the_sms_delivered(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str, tmp_path: Path
) -> None:
    port, token = free_port(), "inbound-token-for-test"
    with sms_gateway(callback_token=token) as (url, gateway):
        settings = NotifySettings(
            common=CommonSettings(
                kafka_bootstrap=servers.kafka_bootstrap,
                mongodb_uri=servers.mongodb_uri,
                topic_partitions=3,
                keyvault_database=f"{database_name}_keys",
                phone_hash_key=SecretStr(PHONE_HASH_SECRET),
            ),
            database=database_name,
            consumer_group=f"test-notify-{uuid.uuid4().hex[:8]}",
            sms_provider="http",
            http_base_url=url,
            http_account="ACtest",
            http_auth_token=SecretStr("gateway-secret"),
            http_status_callback=f"http://127.0.0.1:{port}/v1/delivery-receipts",
            inbound_token=SecretStr(token),
            sms_outbox_path=tmp_path / "unused.jsonl",
            quiet_start=time(0, 0),  # wall-clock test: quiet hours off
            quiet_end=time(0, 0),
        )
        await start_group_at_end(servers.kafka_bootstrap, settings.consumer_group, CASES)
        app = create_app(settings, build(settings))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
        serving = asyncio.create_task(server.serve())
        try:
            await eventually(lambda: server.started, timeout=120)
            case_id = f"case-{uuid.uuid4()}"
            vault = KeyVault(mongo[f"{database_name}_keys"]["case_keys"], "dev-only-master-key")
            record = to_kafka_record(case_submitted(case_id, key=await vault.create(case_id)))
            await produce_raw(
                servers.kafka_bootstrap, CASES, record.value, key=record.key, headers=record.headers
            )

            async def delivered() -> bool:
                doc = await mongo[database_name]["messages"].find_one({"case_id": case_id})
                return bool(doc and doc["status"] == "delivered")

            await eventually(delivered, timeout=120)
        finally:
            server.should_exit = True
            await serving
            await mongo.drop_database(f"{database_name}_keys")
    assert gateway.callbacks == [200]
    [accepted] = gateway.accepted
    assert accepted["StatusCallback"].endswith("/v1/delivery-receipts")
