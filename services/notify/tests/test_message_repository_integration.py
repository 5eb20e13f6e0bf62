"""SMS records and the file provider on the real MongoDB-protocol server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.domain.message import SmsStatus
from lintas_notify.domain.templates import load_catalogue
from lintas_notify.handlers import on_case_submitted
from lintas_shared.crypto import KeyVault
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.integration
NOW = datetime(2026, 9, 16, tzinfo=UTC)


async def test_redelivery_sends_one_sms_and_records_it(
    mongo: AsyncMongoClient[Document], database_name: str, tmp_path: Path
) -> None:
    messages = MongoMessageRepository(mongo[database_name]["messages"])
    provider = FileSmsProvider(tmp_path / "sms.jsonl")
    catalogue, _ = load_catalogue()
    vault = KeyVault(mongo[database_name]["case_keys"], "test-master-key")
    event = case_submitted("case-n1", key=await vault.create("case-n1"), reference="LB-7K3Q9")
    for _ in range(3):
        await on_case_submitted(event, messages, provider, catalogue, vault, lambda: NOW)

    lines = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert len(lines) == 1
    assert lines[0]["to"] == "+6281234567890"
    assert lines[0]["case_reference"] == "LB-7K3Q9"
    assert lines[0]["encoding"] == "GSM-7"
    assert lines[0]["segments"] == 1
    assert lines[0]["template"] == "case_received"
    [record] = await messages.for_case("case-n1")
    assert record["status"] == SmsStatus.SENT.value
    assert record["to"].startswith("enc:v1:")  # the stored recipient is sealed
    assert [h["status"] for h in record["status_history"]] == ["sending", "sent"]
    assert record["provider_message_id"] == lines[0]["message_id"]
    raw = await mongo[database_name]["messages"].find_one({"_id": record["_id"]})
    assert raw is not None
    assert len(raw[OUTBOX_FIELD]) == 1


async def test_a_message_left_sending_is_resolved_from_the_provider(
    mongo: AsyncMongoClient[Document], database_name: str, tmp_path: Path
) -> None:
    collection = mongo[database_name]["messages"]
    messages = MongoMessageRepository(collection)
    provider = FileSmsProvider(tmp_path / "sms.jsonl")
    catalogue, _ = load_catalogue()
    vault = KeyVault(mongo[database_name]["case_keys"], "test-master-key")
    event = case_submitted("case-n2", key=await vault.create("case-n2"))
    await on_case_submitted(event, messages, provider, catalogue, vault, lambda: NOW)
    # Simulate a crash after the provider accepted it but before "sent" was recorded.
    await collection.update_one({"case_id": "case-n2"}, {"$set": {"status": "sending"}})
    await on_case_submitted(event, messages, provider, catalogue, vault, lambda: NOW)

    assert len((tmp_path / "sms.jsonl").read_text().splitlines()) == 1
    [record] = await messages.for_case("case-n2")
    assert record["status"] == "sent"
