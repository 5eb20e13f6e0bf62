"""Field encryption with per-case keys, and crypto-shredding through the key vault."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import structlog
from lintas_shared.crypto import (
    CaseKeyMissingError,
    DataKey,
    KeyVault,
    MasterKeys,
    RememberingKey,
    phone_lookup_hash,
)
from lintas_shared.key_cache import KeyCache
from lintas_shared.mongo import CoalescingReader, Document
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect

from tests.support.fixtures import fixture_key


@pytest.mark.unit
def test_fields_round_trip_and_are_bound_to_case_and_field() -> None:
    key = fixture_key("case-a")
    token = key.encrypt("worker.phone", "+6281234567890")
    assert token.startswith("enc:v1:")
    assert "6281234567890" not in token
    assert key.decrypt("worker.phone", token) == "+6281234567890"
    assert key.encrypt("worker.phone", "+6281234567890") != token  # fresh nonce each time
    with pytest.raises(ValueError, match="does not decrypt"):
        key.decrypt("worker.full_name", token)  # another field
    with pytest.raises(ValueError, match="does not decrypt"):
        fixture_key("case-b").decrypt("worker.phone", token)  # another case


@pytest.mark.unit
def test_phone_lookup_hash_is_keyed() -> None:
    assert phone_lookup_hash("+6281", "k1") == phone_lookup_hash("+6281", "k1")
    assert phone_lookup_hash("+6281", "k1") != phone_lookup_hash("+6281", "k2")


@pytest.mark.integration
async def test_destroying_a_case_key_makes_its_data_unreadable(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    collection = mongo[database_name]["case_keys"]
    vault = KeyVault(collection, "master-secret")
    key = await vault.create("case-x")
    assert (await vault.create("case-x")).key == key.key  # idempotent
    token = key.encrypt("worker.phone", "+6281234567890")
    assert (await vault.get("case-x")).decrypt("worker.phone", token) == "+6281234567890"
    raw = await collection.find_one({"_id": "case-x"})
    assert raw is not None
    assert key.key.hex() not in str(raw)  # stored only wrapped by the master key
    with pytest.raises(ValueError, match="master key"):
        await KeyVault(collection, "another-master").get("case-x")

    assert await vault.destroy("case-x")
    with pytest.raises(CaseKeyMissingError):
        await vault.get("case-x")


@pytest.mark.integration
async def test_keys_asked_for_side_by_side_are_read_in_one_command(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    name = f"case_keys_{uuid.uuid4().hex[:8]}"
    vault = KeyVault(mongo[database_name][name], "master-secret")
    made = {case_id: await vault.create(case_id) for case_id in ("c1", "c2", "c3", "gone")}
    assert await vault.destroy("gone")
    finds = _finds(name)

    # As a consumer's batch does: several cases' handlers, one of them twice, at once.
    asked = ("c1", "c2", "gone", "c3", "c1")
    got = await asyncio.gather(*(vault.get(c) for c in asked), return_exceptions=True)

    assert _finds(name) - finds == 1
    for case_id, key in zip(asked, got, strict=True):
        if case_id == "gone":  # erased: missing for its caller only
            assert isinstance(key, CaseKeyMissingError)
        else:
            assert isinstance(key, DataKey)
            assert key.key == made[case_id].key
    # One after another, each read is its own command, as before.
    assert (await vault.get("c2")).key == made["c2"].key
    assert (await vault.get("c3")).key == made["c3"].key
    assert _finds(name) - finds == 3


@pytest.mark.unit
async def test_a_failed_read_fails_each_read_it_carried() -> None:
    class Unreachable:
        def find(self, _filter: Document, _projection: Any = None) -> Any:
            raise AutoReconnect("store unreachable")

    reader = CoalescingReader(cast(Any, Unreachable()))
    got = await asyncio.gather(reader.find("a"), reader.find("b"), return_exceptions=True)
    assert [type(e) for e in got] == [AutoReconnect, AutoReconnect]
    with pytest.raises(AutoReconnect):  # the next read is asked again, not left waiting
        await asyncio.wait_for(reader.find("a"), timeout=30)


@pytest.mark.unit
def test_reads_left_unsent_by_a_stopped_loop_hold_back_no_other_loop() -> None:
    class Store:
        def __init__(self) -> None:
            self.asked: list[Document] = []

        async def _found(self) -> Any:
            for doc in ({"_id": "a", "n": 1},):
                yield doc

        def find(self, only: Document, _projection: Any = None) -> Any:
            self.asked.append(only)
            return self._found()

    store = Store()
    reader = CoalescingReader(cast(Any, store))
    first = asyncio.new_event_loop()
    left = first.create_task(reader.find("a"))
    first.call_soon(first.stop)
    first.run_forever()  # one turn: the read is asked for, and the loop stops unsent
    assert not left.done()
    assert store.asked == []
    assert asyncio.run(asyncio.wait_for(reader.find("a"), timeout=30)) == {"_id": "a", "n": 1}
    assert store.asked == [{"_id": "a"}]

    async def finish() -> Document | None:  # the first loop, run again, sends its own
        return await left

    assert first.run_until_complete(finish()) == {"_id": "a", "n": 1}
    assert store.asked == [{"_id": "a"}, {"_id": "a"}]
    first.close()


@pytest.mark.unit
async def test_a_query_for_many_callers_carries_none_of_their_log_fields() -> None:
    seen: list[dict[str, Any]] = []

    class Store:
        async def _none(self) -> Any:
            for doc in ():
                yield doc

        def find(self, only: Document, _projection: Any = None) -> Any:
            seen.append(structlog.contextvars.get_contextvars())
            return self._none()

    reader = CoalescingReader(cast(Any, Store()))

    async def read(case_id: str) -> Document | None:
        with structlog.contextvars.bound_contextvars(case_id=case_id):
            return await reader.find(case_id)

    assert await asyncio.gather(read("c1"), read("c2")) == [None, None]
    assert seen == [{}]


def _finds(collection: str) -> float:
    value = REGISTRY.get_sample_value(
        "lintas_store_commands_total", {"collection": collection, "command": "find"}
    )
    return value or 0.0


def test_a_remembering_key_seals_a_value_it_knows_as_the_same_token() -> None:
    plain = fixture_key("case-r")
    opened = plain.encrypt("worker.phone", "+6281234567890")
    key = RememberingKey.of(plain, size=3)

    assert key.decrypt("worker.phone", opened) == "+6281234567890"
    assert key.encrypt("worker.phone", "+6281234567890") == opened  # as stored
    name = key.encrypt("worker.full_name", "Siti")
    assert key.encrypt("worker.full_name", "Siti") == name
    other = key.encrypt("worker.full_name", "Sari")  # another value: a new token
    assert other != name
    assert plain.decrypt("worker.full_name", other) == "Sari"
    # A fourth value starts the memory over: what it knew is sealed anew (and opens).
    key.encrypt("worker.home_region", "Lampung")
    again = key.encrypt("worker.phone", "+6281234567890")
    assert again != opened
    assert plain.decrypt("worker.phone", again) == "+6281234567890"


def test_a_fresh_field_is_sealed_anew_so_equal_entries_never_share_a_token() -> None:
    key = RememberingKey.of(fixture_key("case-f"), fresh=frozenset({"timeline.detail"}))
    first = key.encrypt("timeline.detail", "Tidak bisa")
    assert key.decrypt("timeline.detail", first) == "Tidak bisa"
    assert key.encrypt("timeline.detail", "Tidak bisa") != first


@pytest.mark.integration
async def test_keys_stored_in_one_write_are_read_back_as_one_batch_by_its_index(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    name = f"case_keys_{uuid.uuid4().hex[:8]}"
    collection = mongo[database_name][name]
    vault = KeyVault(collection, "master-secret")
    await vault.ensure_indexes()
    first = await vault.create_many(["b1", "b2", "b3"])
    second = await vault.create_many(["b4"])
    alone = await vault.create("b5")
    assert await vault.destroy("b2")

    entry = await vault.entry("b1")
    assert entry.key.key == first[0].key
    assert entry.batch is not None
    assert entry.created_at is not None
    assert abs(entry.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    other = (await vault.entry("b4")).batch
    assert other not in (None, entry.batch)
    assert (await vault.entry("b5")).batch is None  # stored alone: no batch
    assert (await vault.entry("b5")).key == alone
    finds = _finds(name)
    mates = await vault.batch(entry.batch)
    assert _finds(name) - finds == 1
    assert {k.case_id: k.key for k in mates} == {"b1": first[0].key, "b3": first[2].key}
    assert await vault.batch(str(other)) == second
    assert await vault.batch("no-such-batch") == []
    indexes = await collection.index_information()
    assert indexes["batch"]["key"] == [("batch", 1)]

    # A master key rotation keeps each entry's batch: its keys still come back together.
    rotated = KeyVault(collection, MasterKeys("2", {"2": "new-secret", "1": "master-secret"}))
    report = await rotated.rewrap_all()
    assert report.rewrapped == 4  # b1, b3, b4 and b5
    assert {k.case_id: k.key for k in await rotated.batch(entry.batch)} == {
        "b1": first[0].key,
        "b3": first[2].key,
    }
    # An entry the configured keys cannot unwrap is left out of its batch, not fatal.
    assert await KeyVault(collection, MasterKeys.single("x", "3")).batch(entry.batch) == []


@pytest.mark.integration
async def test_a_key_cache_on_the_store_reads_a_batch_once_for_all_its_cases(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    name = f"case_keys_{uuid.uuid4().hex[:8]}"
    writer = KeyVault(mongo[database_name][name], "master-secret")
    await writer.ensure_indexes()
    made = await writer.create_many([f"k{n}" for n in range(5)])
    cache = KeyCache(KeyVault(mongo[database_name][name], "master-secret"), ttl=30)
    finds = _finds(name)

    got = [await cache.get(key.case_id) for key in made]

    assert [k.key for k in got] == [k.key for k in made]
    assert _finds(name) - finds == 2  # the first case's key, then its batch
