"""Field-level encryption with per-case keys that can be destroyed (crypto-shredding).

Every case has its own 256-bit data key. Personal fields are encrypted with it (AES-GCM,
the case id and field name bound in as associated data) before they are stored or put
in an event. The data key itself is stored only in the key vault, wrapped by the master
key from settings. Erasing a case deletes its vault entry: from then on every copy of
its personal data, in any service's store or in records already in Kafka, is noise.

The vault is one collection shared by the services, standing in for a KMS: intake
creates and destroys keys, the others only read them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import StringConstraints
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_shared.mongo import Document

PREFIX: Final = "enc:v1:"
#: An encrypted field as it travels and is stored: 'enc:v1:<base64 nonce+ciphertext>'.
EncryptedStr = Annotated[str, StringConstraints(pattern=r"^enc:v1:[A-Za-z0-9_\-=]+$")]


class CaseKeyMissingError(Exception):
    """The case's data key is gone (erased) or never existed: its data cannot be read."""


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

    def _aad(self, field: str) -> bytes:
        return f"{self.case_id}\x1f{field}".encode()


class KeyVault:
    """Per-case data keys, stored wrapped by the master key."""

    def __init__(self, collection: AsyncCollection[Document], master_secret: str) -> None:
        self._collection = collection
        self._master = derive_key(master_secret, "key-wrapping")

    async def create(self, case_id: str) -> DataKey:
        """The case's key, created on first use (idempotent)."""
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        wrapped = nonce + AESGCM(self._master).encrypt(nonce, key, case_id.encode())
        try:
            await self._collection.insert_one(
                {
                    "_id": case_id,
                    "wrapped": base64.b64encode(wrapped).decode(),
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            return await self.get(case_id)
        return DataKey(case_id, key)

    async def get(self, case_id: str) -> DataKey:
        """The case's key; raises CaseKeyMissingError after erasure."""
        doc = await self._collection.find_one({"_id": case_id})
        if doc is None:
            raise CaseKeyMissingError(case_id)
        raw = base64.b64decode(doc["wrapped"])
        try:
            key = AESGCM(self._master).decrypt(raw[:12], raw[12:], case_id.encode())
        except InvalidTag:
            raise ValueError("the vault entry does not unwrap with this master key") from None
        return DataKey(case_id, key)

    async def destroy(self, case_id: str) -> bool:
        """Delete the case's key for good; True if there was one."""
        result = await self._collection.delete_one({"_id": case_id})
        return result.deleted_count == 1
