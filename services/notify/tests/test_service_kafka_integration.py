"""The notify service in-process on the real Kafka broker and MongoDB-protocol server:
redelivery, a poison event, a restart in the `sending` window, and the provider API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_notify.bootstrap import NotifyService, build, create_app
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.ports import ProviderUnavailableError, SmsProvider
from lintas_notify.settings import NotifySettings
from lintas_shared.crypto import DataKey, KeyVault
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.mongo import Document
from lintas_shared.settings import CommonSettings
from lintas_shared.topics import CASES, REFERRALS, dead_letter_topic
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from tests.support.fixtures import PHONE_HASH_SECRET, case_submitted
from tests.support.kafka import collect, eventually, produce_raw
from tests.support.kafka_groups import start_group_at_end
from tests.support.notify import case_closed, referral_accepted
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
TOKEN = "test-inbound-token"
PHONE = "+6281234567890"


class Harness:
    """One notify configuration (database, group, SMS file) that can be started again."""

    def __init__(self, servers: Servers, database: str, outbox: Path) -> None:
        self.outbox = outbox
        self.settings = NotifySettings(
            common=CommonSettings(
                kafka_bootstrap=servers.kafka_bootstrap,
                mongodb_uri=servers.mongodb_uri,
                topic_partitions=3,
                keyvault_database=f"{database}_keys",
                phone_hash_key=SecretStr(PHONE_HASH_SECRET),
            ),
            database=database,
            consumer_group=f"test-notify-{uuid.uuid4().hex[:8]}",
            sms_outbox_path=outbox,
            inbound_token=SecretStr(TOKEN),
            quiet_start=time(0, 0),  # wall-clock tests: quiet hours off
            quiet_end=time(0, 0),
            worker_daily_limit=100,
            dispatch_interval=0.2,
        )
        self.bootstrap = servers.kafka_bootstrap

    @asynccontextmanager
    async def running(
        self, provider: SmsProvider | None = None
    ) -> AsyncIterator[tuple[FastAPI, NotifyService]]:
        service = build(self.settings, provider=provider)
        app = create_app(self.settings, service)
        async with app.router.lifespan_context(app):
            yield app, service

    def lines(self, reference: str | None = None) -> list[dict[str, Any]]:
        if not self.outbox.exists():
            return []
        found = [json.loads(line) for line in self.outbox.read_text().splitlines() if line]
        return [f for f in found if reference is None or f["case_reference"] == reference]

    async def key(self, mongo: AsyncMongoClient[Document], case_id: str) -> DataKey:
        vault = KeyVault(
            mongo[self.settings.common.keyvault_database]["case_keys"],
            self.settings.common.master_key.get_secret_value(),
        )
        return await vault.create(case_id)

    async def skip_history(self) -> None:
        """Both of the service's groups start at the end of their topics."""
        group = self.settings.consumer_group
        await start_group_at_end(self.bootstrap, group, CASES)
        await start_group_at_end(self.bootstrap, f"{group}.referrals", REFERRALS)

    async def publish(self, topic: str, event: CloudEvent) -> None:
        record = to_kafka_record(event)
        await produce_raw(
            self.bootstrap, topic, record.value, key=record.key, headers=record.headers
        )


@pytest.fixture
async def harness(
    servers: Servers, mongo: AsyncMongoClient[Document], database_name: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    harness = Harness(servers, database_name, tmp_path / "sms-outbox.jsonl")
    await harness.skip_history()
    yield harness
    await mongo.drop_database(f"{database_name}_keys")


def new_reference() -> str:
    return "LB-" + "".join(c for c in uuid.uuid4().hex.upper() if c in "3479ACDEF")[:6]


async def test_a_redelivered_event_sends_one_sms(
    harness: Harness, mongo: AsyncMongoClient[Document]
) -> None:
    case_id, reference = f"case-{uuid.uuid4()}", new_reference()
    submitted = case_submitted(case_id, key=await harness.key(mongo, case_id), reference=reference)
    async with harness.running():
        await harness.publish(CASES, submitted)
        await harness.publish(CASES, submitted)  # the same record again: a redelivery
        # The same case, the same partition: once its closure is sent, the copy was seen.
        await harness.publish(CASES, case_closed(case_id))
        await eventually(lambda: len(harness.lines(reference)) >= 2, timeout=120)
    assert [line["template"] for line in harness.lines(reference)] == [
        "case_received",
        "case_closed",
    ]
    sent = await collect(
        harness.bootstrap,
        "lintas.notifications.v1",
        lambda r: r.key == case_id.encode() and r.headers["ce_type"].endswith("sms_sent"),
        count=2,
        settle=1.0,
        timeout=120,
    )
    # One SmsSent per SMS, none for the redelivered copy. (The outbox relay is
    # at-least-once: a stop mid-pass may publish an entry again, with the same ce_id.)
    assert len({r.headers["ce_id"] for r in sent}) == 2


async def test_a_poison_event_is_parked_and_the_next_one_is_sent(
    harness: Harness, mongo: AsyncMongoClient[Document]
) -> None:
    case_id, reference = f"case-{uuid.uuid4()}", new_reference()
    poison_id = f"poison-{uuid.uuid4()}"
    async with harness.running():
        await harness.publish(
            CASES,
            case_submitted(case_id, key=await harness.key(mongo, case_id), reference=reference),
        )
        await produce_raw(
            harness.bootstrap,
            REFERRALS,
            b'{"referral_id": ',
            key=case_id.encode(),
            headers={"ce_id": poison_id, "ce_type": "org.lintas.referral.accepted"},
        )
        await harness.publish(REFERRALS, referral_accepted(case_id))
        await eventually(lambda: len(harness.lines(reference)) == 2, timeout=120)
    [parked] = await collect(
        harness.bootstrap,
        dead_letter_topic(REFERRALS),
        lambda r: r.headers.get("ce_id") == poison_id,
        timeout=120,
    )
    assert parked.headers["lintas_dlq_consumer"] == "notify"
    assert parked.headers["lintas_dlq_reason"].startswith("malformed")
    assert harness.lines(reference)[1]["template"] == "referral_accepted"


async def test_a_restart_resolves_sending_without_a_blind_resend(
    harness: Harness, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    messages = mongo[database_name]["messages"]
    taken_id, taken_ref = f"case-{uuid.uuid4()}", new_reference()
    lost_id, lost_ref = f"case-{uuid.uuid4()}", new_reference()
    async with harness.running():
        for case_id, reference in ((taken_id, taken_ref), (lost_id, lost_ref)):
            key = await harness.key(mongo, case_id)
            await harness.publish(
                CASES, case_submitted(case_id, key=key, reference=reference, phone=PHONE)
            )
        await eventually(lambda: harness.lines(taken_ref) and harness.lines(lost_ref))
    # The crash, twice over: one message the provider took before we recorded it; one
    # that never reached the provider (its line is gone) before the process died.
    await messages.update_many(
        {"case_id": {"$in": [taken_id, lost_id]}}, {"$set": {"status": "sending"}}
    )
    kept = [line for line in harness.lines() if line["case_reference"] != lost_ref]
    harness.outbox.write_text("".join(json.dumps(line) + "\n" for line in kept))

    async with harness.running():

        async def settled() -> bool:
            docs = [d async for d in messages.find({"case_id": {"$in": [taken_id, lost_id]}})]
            return len(docs) == 2 and all(d["status"] == "sent" for d in docs)

        await eventually(settled, timeout=120)
    assert len(harness.lines(taken_ref)) == 1  # found at the provider: not sent again
    assert len(harness.lines(lost_ref)) == 1  # not found: sent, once


async def test_the_provider_api_needs_the_token_and_answers_status(
    harness: Harness, mongo: AsyncMongoClient[Document]
) -> None:
    case_id, reference = f"case-{uuid.uuid4()}", new_reference()
    async with harness.running() as (app, _service):
        await harness.publish(
            CASES,
            case_submitted(case_id, key=await harness.key(mongo, case_id), reference=reference),
        )
        await eventually(lambda: harness.lines(reference), timeout=120)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            body = {"from": PHONE, "body": f"STATUS {reference}", "id": "in-1"}
            assert (await client.post("/v1/inbound-sms", json=body)).status_code == 401
            wrong = {"X-Lintas-Provider-Token": "nope"}
            assert (
                await client.post("/v1/inbound-sms", json=body, headers=wrong)
            ).status_code == 401
            auth = {"X-Lintas-Provider-Token": TOKEN}
            answer = await client.post("/v1/inbound-sms", json=body, headers=auth)
            assert answer.json() == {"intent": "status", "replied": True}
            stranger = {"From": "+6281299990000", "Body": reference, "MessageSid": "SM-2"}
            answer = await client.post("/v1/inbound-sms", data=stranger, headers=auth)
            assert answer.json() == {"intent": "status", "replied": True}
            bad = await client.post("/v1/inbound-sms", json={"from": "0812"}, headers=auth)
            assert bad.status_code == 422
            assert [e["field"] for e in bad.json()["errors"]] == ["body"]

            first = harness.lines(reference)[0]
            receipt = {"MessageSid": first["message_id"], "MessageStatus": "delivered"}
            answer = await client.post("/v1/delivery-receipts", data=receipt, headers=auth)
            assert answer.json() == {"matched": True}
            unknown = {"message_id": "nope", "status": "delivered"}
            answer = await client.post("/v1/delivery-receipts", json=unknown, headers=auth)
            assert answer.json() == {"matched": False}
            assert (await client.post("/v1/delivery-receipts", json=unknown)).status_code == 401

    replies = [line for line in harness.lines() if line["template"].startswith("status_")]
    assert [(r["to"], r["template"]) for r in replies] == [
        (PHONE, "status_reply"),
        ("+6281299990000", "status_unknown"),
    ]
    assert "sudah diterima" in replies[0]["body"]
    assert reference not in replies[1]["body"]
    [record] = [
        d async for d in mongo[harness.settings.database]["messages"].find({"case_id": case_id})
    ]
    assert record["status"] == "delivered"


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json"])
async def test_deep_nesting_answers_400_on_every_endpoint_whatever_the_content_type(
    harness: Harness, content_type: str | None
) -> None:
    deep = b'{"from": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    headers = {"X-Lintas-Provider-Token": TOKEN}
    if content_type:
        headers["Content-Type"] = content_type
    async with harness.running() as (app, _service):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            schema = (await client.get("/openapi.json")).json()
            with_bodies = [
                (method.upper(), path)
                for path, operations in schema["paths"].items()
                for method, operation in operations.items()
                if "requestBody" in operation
            ]
            assert {path for _, path in with_bodies} == {"/v1/inbound-sms", "/v1/delivery-receipts"}
            for method, path in with_bodies:
                answer = await client.request(method, path, content=deep, headers=headers)
                assert (path, answer.status_code) == (path, 400)
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert "nest" in answer.json()["detail"]
    assert harness.lines() == []


class DownForOneNumber(FileSmsProvider):
    """The file provider, except that one number's route is down."""

    def __init__(self, path: Path, down: str) -> None:
        super().__init__(path)
        self.down = down

    async def send(self, sms: OutgoingSms) -> str:
        if sms.to == self.down:
            raise ProviderUnavailableError("HTTP 503 route down", retry_after=0.01)
        return await super().send(sms)


async def test_after_the_retry_budget_the_event_is_parked_and_the_next_is_sent(
    harness: Harness, mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    down = "+6281200000666"
    failing_id, failing_ref = f"case-{uuid.uuid4()}", new_reference()
    next_id, next_ref = f"case-{uuid.uuid4()}", new_reference()
    failing = case_submitted(
        failing_id, key=await harness.key(mongo, failing_id), reference=failing_ref, phone=down
    )
    async with harness.running(DownForOneNumber(harness.outbox, down)):
        await harness.publish(CASES, failing)
        await harness.publish(
            CASES,
            case_submitted(next_id, key=await harness.key(mongo, next_id), reference=next_ref),
        )
        [parked] = await collect(
            harness.bootstrap,
            dead_letter_topic(CASES),
            lambda r: r.headers.get("ce_id") == failing.id,
            timeout=120,
        )
        await eventually(lambda: harness.lines(next_ref), timeout=120)
    assert parked.headers["lintas_dlq_reason"].startswith(
        "failed after 3 attempts: ProviderUnavailableError: HTTP 503 route down"
    )
    assert harness.lines(failing_ref) == []
    [record] = [d async for d in mongo[database_name]["messages"].find({"case_id": failing_id})]
    # Left `sending` with the provider's errors: a replay or restart asks before resending.
    assert record["status"] == "sending"
    assert record["attempts"] == 9  # 3 inline attempts in each of 3 consumer attempts
