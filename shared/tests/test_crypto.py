"""Field encryption with per-case keys, and crypto-shredding through the key vault."""

from __future__ import annotations

import pytest
from lintas_shared.crypto import CaseKeyMissingError, KeyVault, RememberingKey, phone_lookup_hash
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

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
