"""Erasure leaves nothing in notify that links the erased case to her phone (issue #15).

Notify keeps, for as long as a case lives, a look-up hash of its phone (inbound SMS,
opt-outs, the daily limit). These tests read every collection of notify's database
raw, and the file provider's outbox, after erasing one and then both of a worker's two
cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_shared.crypto import phone_lookup_hash
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.fixtures import PHONE_HASH_SECRET, case_submitted
from tests.support.notify import Notify, case_erased, referral_accepted

pytestmark = pytest.mark.integration
PHONE = "+6281234567890"
DIGITS = PHONE.removeprefix("+")


async def raw_documents(mongo: AsyncMongoClient[Document], database: str) -> list[str]:
    """Every document of notify's database, as text."""
    db = mongo[database]
    return [
        str(doc) for name in await db.list_collection_names() async for doc in db[name].find({})
    ]


async def submit(notify: Notify, case_id: str, reference: str) -> None:
    key = await notify.vault.create(case_id)
    event = case_submitted(case_id, key=key, phone=PHONE, reference=reference)
    await notify.handlers.on_case_submitted(event)


async def test_erasure_leaves_no_phone_hash_linked_to_the_case(
    notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    lookup = phone_lookup_hash(PHONE, PHONE_HASH_SECRET)
    await submit(notify, "case-one", "LB-AC347")
    await submit(notify, "case-two", "LB-DE349")
    notify.clock.advance(hours=1)
    await notify.handlers.on_referral_accepted(referral_accepted("case-one"))
    notify.clock.advance(hours=1)
    await notify.conversations.inbound(PHONE, "STATUS LB-AC347", "in-1")
    await notify.conversations.inbound(PHONE, "STOP", "in-2")
    assert any(lookup in doc for doc in await raw_documents(mongo, notify.database))

    # The first case erased: what is left of it names no hash; her other case still
    # keeps her STOP (a worker's STOP applies to her phone).
    assert len(notify.keys) == 2  # read when each case came in
    await notify.vault.destroy("case-one")
    await notify.handlers.on_case_erased(case_erased("case-one"))
    assert len(notify.keys) == 1  # the erased case's key is kept no longer
    for doc in await raw_documents(mongo, notify.database):
        if "case-one" in doc or "LB-AC347" in doc:
            assert lookup not in doc, doc
            assert DIGITS not in doc, doc
    assert await notify.preferences.is_opted_out(lookup)

    # Her last case erased: nothing anywhere holds her phone's hash.
    await notify.vault.destroy("case-two")
    await notify.handlers.on_case_erased(case_erased("case-two"))
    for doc in await raw_documents(mongo, notify.database):
        assert lookup not in doc, doc
        assert DIGITS not in doc, doc


async def test_erasure_removes_her_phone_from_the_file_providers_outbox(
    notify: Notify, tmp_path: Path
) -> None:
    outbox = tmp_path / "sms-outbox.jsonl"
    notify.rewire(FileSmsProvider(outbox))
    await submit(notify, "case-file", "LB-FH379")
    await submit(notify, "case-kept", "LB-JK479")
    await notify.conversations.inbound(PHONE, "STATUS LB-FH379", "in-3")
    assert DIGITS in outbox.read_text()

    await notify.vault.destroy("case-file")
    await notify.handlers.on_case_erased(case_erased("case-file"))
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    for line in lines:
        if line["case_reference"] == "LB-FH379":
            assert line["to"] is None, line
    # The other case's SMS stays as the gateway sent it.
    assert [line["to"] for line in lines if line["case_reference"] == "LB-JK479"] == [PHONE]
