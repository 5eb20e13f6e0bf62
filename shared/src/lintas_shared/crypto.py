"""Field-level encryption with per-case keys that can be destroyed (crypto-shredding).

Every case has its own 256-bit data key. Personal fields are encrypted with it (AES-GCM,
the case id and field name bound in as associated data) before they are stored or put
in an event. The data key itself is stored only in the key vault, wrapped by the master
key from settings. Erasing a case deletes its vault entry: from then on every copy of
its personal data, in any service's store or in records already in Kafka, is noise.

The vault is one collection shared by the services, standing in for a KMS: intake
creates and destroys keys, the others only read them.

Master keys have ids. Each vault entry stores the id of the master key that wrapped it
(`key_id`; an entry from before ids is the legacy id "1"), and a value sealed directly
with a master-derived key starts `mk:<id>:`. Settings name the current key and may list
previous ones (`MasterKeys`): those are still read, never used to wrap, so both old and
new work while `KeyVault.rewrap_all` (`lintas keys rotate`) moves every entry over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import StringConstraints
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lintas_shared.ids import new_id
from lintas_shared.mongo import CoalescingReader, Document
from lintas_shared.settings import LEGACY_MASTER_KEY_ID, CommonSettings

PREFIX: Final = "enc:v1:"
#: An encrypted field as it travels and is stored: 'enc:v1:<base64 nonce+ciphertext>'.
EncryptedStr = Annotated[str, StringConstraints(pattern=r"^enc:v1:[A-Za-z0-9_\-=]+$")]


class CaseKeyMissingError(Exception):
    """The case's data key is gone (erased) or never existed: its data cannot be read."""


class UnknownMasterKeyError(ValueError):
    """A value was wrapped or sealed by a master key id these settings do not hold."""


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for one purpose from a configured secret."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def phone_lookup_hash(phone: str, secret: str) -> str:
    """A keyed hash of an E.164 phone: finds a worker's cases without storing the phone."""
    return hmac.new(derive_key(secret, "phone-lookup"), phone.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DataKey:
    """One case's data key."""

    case_id: str
    key: bytes

    def encrypt(self, field: str, plaintext: str) -> str:
        """Encrypt one field's value."""
        nonce = os.urandom(12)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext.encode(), self._aad(field))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, field: str, token: str) -> str:
        """Decrypt one field's value; raises ValueError if it was not sealed by this key."""
        if not token.startswith(PREFIX):
            raise ValueError("not an encrypted field")
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
        try:
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], self._aad(field)).decode()
        except InvalidTag:  # wrong key, field or case
            raise ValueError("field does not decrypt with this case's key") from None

    def keyed_hash(self, purpose: str, value: str) -> str:
        """A hash of `value` keyed by this case's key (HMAC-SHA256, hex): equal values of
        one case compare equal, and nobody can recompute or brute-force it without the
        key, so erasing the case (destroying the key) leaves it unlinkable to anything."""
        purpose_key = hmac.new(self.key, f"{self.case_id}\x1f{purpose}".encode(), hashlib.sha256)
        return hmac.new(purpose_key.digest(), value.encode(), hashlib.sha256).hexdigest()

    def _aad(self, field: str) -> bytes:
        return f"{self.case_id}\x1f{field}".encode()


@dataclass(frozen=True)
class RememberingKey(DataKey):
    """A case's key that seals a value it sealed or opened before as the same token.

    A document encoded again then holds, for every personal field that did not change,
    exactly what is stored, so a write can leave it out (and no AES runs for it). Reusing
    a token is sending the same ciphertext again: no nonce is ever used for another
    value. At most `size` values are kept; beyond that it starts over. Fields in `fresh`
    (one name for the entries of a list, say) are sealed anew each time, so that equal
    values in two places do not show as one token.
    """

    size: int = field(default=64, compare=False)
    fresh: frozenset[str] = field(default=frozenset(), compare=False)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)
    _values: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(
        cls, key: DataKey, size: int = 64, fresh: frozenset[str] = frozenset()
    ) -> RememberingKey:
        """`key`, remembering (except `fresh` fields)."""
        return cls(key.case_id, key.key, size, fresh)

    def encrypt(self, field: str, plaintext: str) -> str:
        """The token this key gave `plaintext` in `field` before, else a new one."""
        if field in self.fresh:
            return super().encrypt(field, plaintext)
        token = self._tokens.get((field, plaintext))
        if token is None:
            token = super().encrypt(field, plaintext)
            self._note(field, plaintext, token)
        return token

    def decrypt(self, field: str, token: str) -> str:
        """As `DataKey.decrypt`, noting the pair (unless `field` is fresh)."""
        if field in self.fresh:
            return super().decrypt(field, token)
        value = self._values.get((field, token))
        if value is None:
            value = super().decrypt(field, token)
            self._note(field, value, token)
        return value

    def _note(self, field: str, value: str, token: str) -> None:
        if len(self._tokens) >= self.size:
            self._tokens.clear()
            self._values.clear()
        self._tokens[(field, value)] = token
        self._values[(field, token)] = value


#: A value sealed directly with a master-derived key: `mk:<key id>:enc:v1:…`.
MASTER_SEALED_PREFIX: Final = "mk:"


@dataclass(frozen=True)
class MasterKeys:
    """The current master key (by id) and the previous ones still read during a rotation.

    Only the current key wraps or seals; any of them unwraps or opens what carries its id.
    """

    current_id: str
    #: {id: secret}, the current key included.
    secrets: Mapping[str, str]

    def __post_init__(self) -> None:
        if self.current_id not in self.secrets:
            raise ValueError("the current master key id has no secret")

    @classmethod
    def single(cls, secret: str, key_id: str = LEGACY_MASTER_KEY_ID) -> MasterKeys:
        """One master key (what a deployment runs with outside a rotation)."""
        return cls(key_id, {key_id: secret})

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> MasterKeys:
        """`LINTAS_MASTER_KEY` as `LINTAS_MASTER_KEY_ID`, and `LINTAS_MASTER_KEYS_PREVIOUS`."""
        return cls(settings.master_key_id, settings.master_keys())

    def derived(self, key_id: str, purpose: str) -> bytes:
        """The key for `purpose` derived from master key `key_id`."""
        secret = self.secrets.get(key_id)
        if secret is None:
            raise UnknownMasterKeyError(
                f"master key id {key_id!r} is not configured (LINTAS_MASTER_KEY_ID, "
                "LINTAS_MASTER_KEYS_PREVIOUS)"
            )
        return derive_key(secret, purpose)

    def seal(self, purpose: str, bound: str, plaintext: str) -> str:
        """`plaintext` sealed with the current key's `purpose` key, bound to `bound`, as
        `mk:<id>:enc:v1:…`."""
        box = DataKey(purpose, self.derived(self.current_id, purpose))
        return f"{MASTER_SEALED_PREFIX}{self.current_id}:{box.encrypt(bound, plaintext)}"

    def open(self, purpose: str, bound: str, sealed: str) -> str:
        """What `seal` sealed, under whichever configured key its id names (a value
        without an id is the legacy key's). Raises ValueError if it does not open."""
        key_id, token = sealed_key_id(sealed)
        return DataKey(purpose, self.derived(key_id, purpose)).decrypt(bound, token)


def sealed_key_id(sealed: str) -> tuple[str, str]:
    """The master key id of a sealed value and the `enc:v1:` token it carries."""
    if sealed.startswith(MASTER_SEALED_PREFIX):
        key_id, _, token = sealed[len(MASTER_SEALED_PREFIX) :].partition(":")
        return key_id, token
    return LEGACY_MASTER_KEY_ID, sealed


@dataclass
class RotationReport:
    """What `KeyVault.rewrap_all` did; `remaining` 0 means no entry is left under any
    previous key, so the previous keys can be removed from settings."""

    current_id: str
    checked: int = 0
    rewrapped: int = 0
    #: Erased (deleted) between being read and being re-wrapped: nothing to do.
    erased_meanwhile: int = 0
    #: Wrapped by a key id these settings do not hold: left as they are.
    unreadable: int = 0
    #: Entries not under the current key when the pass ended (by id).
    remaining: dict[str, int] = field(default_factory=dict)
    #: Entries under the current key when the pass ended.
    current: int = 0


@dataclass(frozen=True)
class StoredKey:
    """A case's key as the vault holds it."""

    key: DataKey
    #: The write it was stored in (`KeyVault.create_many`); None: stored alone, or
    #: before batches were named.
    batch: str | None = None
    created_at: datetime | None = None


#: The field naming the keys stored in one write (`KeyVault.create_many`): a reader of
#: one of them takes the others in the same query (`lintas_shared.key_cache`).
BATCH_FIELD: Final = "batch"


class KeyVault:
    """Per-case data keys, stored wrapped by the current master key with its id."""

    def __init__(self, collection: AsyncCollection[Document], master: MasterKeys | str) -> None:
        self._collection = collection
        self._keys = MasterKeys.single(master) if isinstance(master, str) else master
        # A consumer's batch asks for many cases' keys at once: one query for them all.
        self._reads = CoalescingReader(collection)

    def _wrap(self, case_id: str, key: bytes) -> str:
        wrapping = self._keys.derived(self._keys.current_id, "key-wrapping")
        nonce = os.urandom(12)
        return base64.b64encode(
            nonce + AESGCM(wrapping).encrypt(nonce, key, case_id.encode())
        ).decode()

    def _unwrap(self, case_id: str, doc: Document) -> bytes:
        # An entry from before key ids were stored was wrapped by the legacy id.
        wrapping = self._keys.derived(doc.get("key_id", LEGACY_MASTER_KEY_ID), "key-wrapping")
        raw = base64.b64decode(doc["wrapped"])
        try:
            return AESGCM(wrapping).decrypt(raw[:12], raw[12:], case_id.encode())
        except InvalidTag:
            raise ValueError("the vault entry does not unwrap with this master key") from None

    async def ensure_indexes(self) -> None:
        """The index `batch` searches; made by intake, the vault's writer, before it
        stores a key with a batch (so no reader ever searches a batch without it)."""
        await self._collection.create_index(BATCH_FIELD, name=BATCH_FIELD)

    async def create(self, case_id: str) -> DataKey:
        """The case's key, created on first use (idempotent)."""
        key = AESGCM.generate_key(bit_length=256)
        try:
            await self._collection.insert_one(
                {
                    "_id": case_id,
                    "wrapped": self._wrap(case_id, key),
                    "key_id": self._keys.current_id,
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            return await self.get(case_id)
        return DataKey(case_id, key)

    async def create_many(self, case_ids: Sequence[str]) -> list[DataKey]:
        """The keys of many cases (in their order) with one unordered insert, named as
        one batch; idempotent like `create`: a case that has a key already keeps it,
        read back."""
        fresh = {case_id: AESGCM.generate_key(bit_length=256) for case_id in case_ids}
        if not fresh:
            return []
        ids, now, taken = list(fresh), datetime.now(UTC), set[str]()
        batch = new_id()
        try:
            await self._collection.insert_many(
                [
                    {
                        "_id": case_id,
                        "wrapped": self._wrap(case_id, key),
                        "key_id": self._keys.current_id,
                        "created_at": now,
                        BATCH_FIELD: batch,
                    }
                    for case_id, key in fresh.items()
                ],
                ordered=False,
            )
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != 11000 for error in errors):
                raise
            taken = {ids[error["index"]] for error in errors}
        keys = {case_id: DataKey(case_id, key) for case_id, key in fresh.items()}
        for case_id in taken:
            keys[case_id] = await self.get(case_id)
        return [keys[case_id] for case_id in case_ids]

    async def get(self, case_id: str) -> DataKey:
        """The case's key; raises CaseKeyMissingError after erasure."""
        return (await self.entry(case_id)).key

    async def entry(self, case_id: str) -> StoredKey:
        """The case's key with its batch and age; raises CaseKeyMissingError after
        erasure."""
        doc = await self._reads.find(case_id)
        if doc is None:
            raise CaseKeyMissingError(case_id)
        created = doc.get("created_at")
        if isinstance(created, datetime) and created.tzinfo is None:
            created = created.replace(tzinfo=UTC)  # a client not tz_aware: naive UTC
        return StoredKey(
            DataKey(case_id, self._unwrap(case_id, doc)),
            doc.get(BATCH_FIELD),
            created if isinstance(created, datetime) else None,
        )

    async def batch(self, batch_id: str) -> list[DataKey]:
        """The keys of one batch still in the vault (the erased ones are gone), in one
        query; an entry that does not unwrap with the configured master keys is left
        out (its own `get` says why)."""
        keys = []
        async for doc in self._collection.find(
            {BATCH_FIELD: batch_id}, {"wrapped": 1, "key_id": 1}
        ):
            try:
                keys.append(DataKey(doc["_id"], self._unwrap(doc["_id"], doc)))
            except ValueError:
                continue
        return keys

    async def rewrap_all(
        self,
        progress: Callable[[RotationReport], Awaitable[None]] | None = None,
        batch_size: int = 200,
    ) -> RotationReport:
        """Re-wrap every entry not under the current master key with it, while services
        keep reading and writing: each entry is replaced only if it is unchanged since it
        was read (an entry erased meanwhile stays erased, never comes back), new entries
        are already current, and a second run finds nothing left to do. `progress` is
        called after each batch."""
        current = self._keys.current_id
        report = RotationReport(current)
        after = ""
        while True:
            docs = await self._collection.find(
                {"_id": {"$gt": after}, "key_id": {"$ne": current}},
                {"_id": 1, "wrapped": 1, "key_id": 1},
                sort=[("_id", 1)],
                limit=batch_size,
            ).to_list()
            if not docs:
                break
            for doc in docs:
                after = doc["_id"]
                report.checked += 1
                try:
                    key = self._unwrap(after, doc)
                except ValueError:  # UnknownMasterKeyError too: a key not configured
                    report.unreadable += 1
                    continue
                result = await self._collection.update_one(
                    {"_id": after, "wrapped": doc["wrapped"]},
                    {
                        "$set": {
                            "wrapped": self._wrap(after, key),
                            "key_id": current,
                            "rewrapped_at": datetime.now(UTC),
                        }
                    },
                )
                if result.modified_count == 1:
                    report.rewrapped += 1
                elif await self._collection.find_one({"_id": after}, {"_id": 1}) is None:
                    report.erased_meanwhile += 1
                # else: another run re-wrapped it meanwhile; it is current now.
            if progress is not None:
                await progress(report)
        async for doc in self._collection.find({"key_id": {"$ne": current}}, {"key_id": 1}):
            key_id = doc.get("key_id", LEGACY_MASTER_KEY_ID)
            report.remaining[key_id] = report.remaining.get(key_id, 0) + 1
        report.current = await self._collection.count_documents({"key_id": current})
        return report

    async def destroy(self, case_id: str) -> bool:
        """Delete the case's key for good; True if there was one."""
        result = await self._collection.delete_one({"_id": case_id})
        return result.deleted_count == 1

    async def destroy_many(self, case_ids: Sequence[str]) -> int:
        """Delete these cases' keys for good (one command); how many there were."""
        if not case_ids:
            return 0
        result = await self._collection.delete_many({"_id": {"$in": list(case_ids)}})
        return result.deleted_count
