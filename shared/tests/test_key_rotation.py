"""Master key ids and rotation on the real store: entries carry the id of the key that
wrapped them, old and new keys are both read during a rotation, a case created or erased
mid-rotation is handled, a second pass finds nothing to do, and afterwards the old key can
be removed from settings."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lintas_shared.crypto import (
    CaseKeyMissingError,
    KeyVault,
    MasterKeys,
    RotationReport,
    UnknownMasterKeyError,
    derive_key,
)
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

pytestmark = pytest.mark.integration

OLD = "old-master-secret-" + "o" * 32
NEW = "new-master-secret-" + "n" * 32
PHONE = "+6281234567890"


async def _legacy_entry(collection: AsyncCollection[Document], case_id: str) -> bytes:
    """A vault entry as stored before key ids existed (no `key_id`), wrapped by OLD."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    wrapping = derive_key(OLD, "key-wrapping")
    wrapped = nonce + AESGCM(wrapping).encrypt(nonce, key, case_id.encode())
    await collection.insert_one({"_id": case_id, "wrapped": base64.b64encode(wrapped).decode()})
    return key


async def test_entries_carry_the_id_of_the_key_that_wrapped_them(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["case_keys"]
    legacy = await _legacy_entry(collection, "case-legacy")
    vault = KeyVault(collection, MasterKeys.single(OLD))  # the legacy id, "1"
    assert (await vault.get("case-legacy")).key == legacy
    await KeyVault(collection, MasterKeys.single(NEW, "2")).create("case-new")
    stored = await collection.find_one({"_id": "case-new"})
    assert stored is not None
    assert stored["key_id"] == "2"
    with pytest.raises(UnknownMasterKeyError, match="'2' is not configured"):
        await vault.get("case-new")


async def test_rotation_reads_old_and_new_then_needs_only_the_new_key(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["case_keys"]
    before = KeyVault(collection, MasterKeys.single(OLD))
    keys = {f"case-{i:02d}": (await before.create(f"case-{i:02d}")).key for i in range(5)}
    keys["case-05"] = await _legacy_entry(collection, "case-05")
    sealed = {case: (await before.get(case)).encrypt("worker.phone", PHONE) for case in keys}
    # Every service now runs with the new key current and the old one previous.
    rotating = MasterKeys("2", {"1": OLD, "2": NEW})
    service = KeyVault(collection, rotating)
    batches: list[tuple[int, int]] = []

    async def meanwhile(report: RotationReport) -> None:
        batches.append((report.checked, report.rewrapped))
        if len(batches) > 1:
            return
        # After the first batch: some entries are under the new key, the rest under the
        # old; the services read all of them, create a case and erase one not reached yet.
        wrapped_by = {doc["_id"]: doc.get("key_id") async for doc in collection.find({})}
        assert set(wrapped_by.values()) == {"1", "2", None}
        for case, key in keys.items():
            assert (await service.get(case)).key == key
        keys["case-mid"] = (await service.create("case-mid")).key
        assert await service.destroy("case-04")
        del keys["case-04"]

    report = await KeyVault(collection, rotating).rewrap_all(meanwhile, batch_size=2)
    assert batches[0] == (2, 2)
    # case-00..03 and 05 re-wrapped; case-04 erased meanwhile; case-mid already current.
    assert (report.rewrapped, report.remaining, report.current) == (5, {}, 6)
    with pytest.raises(CaseKeyMissingError):
        await service.get("case-04")  # never brought back

    again = await KeyVault(collection, rotating).rewrap_all()
    assert (again.checked, again.rewrapped, again.remaining) == (0, 0, {})

    # The old key removed from settings: everything still reads.
    after = KeyVault(collection, MasterKeys.single(NEW, "2"))
    for case, key in keys.items():
        data_key = await after.get(case)
        assert data_key.key == key
        if case in sealed:
            assert data_key.decrypt("worker.phone", sealed[case]) == PHONE
    assert {doc["key_id"] async for doc in collection.find({})} == {"2"}


async def test_an_entry_under_an_unconfigured_key_is_reported_not_lost(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["case_keys"]
    await KeyVault(collection, MasterKeys.single("a-forgotten-key-" + "f" * 32, "9")).create("c9")
    report = await KeyVault(collection, MasterKeys("2", {"1": OLD, "2": NEW})).rewrap_all()
    assert (report.unreadable, report.remaining) == (1, {"9": 1})
    assert await collection.find_one({"_id": "c9", "key_id": "9"}) is not None


async def test_many_keys_are_made_in_one_write_and_existing_ones_are_kept(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["case_keys"]
    vault = KeyVault(collection, MasterKeys.single(NEW, "2"))
    existing = await vault.create("case-b")
    keys = await vault.create_many(["case-a", "case-b", "case-c"])

    assert [k.case_id for k in keys] == ["case-a", "case-b", "case-c"]
    assert keys[1].key == existing.key  # a case that had a key keeps it
    for key in keys:
        assert (await vault.get(key.case_id)).key == key.key
    assert await collection.count_documents({}) == 3
    assert await vault.create_many([]) == []
