"""Identifiers: deterministic ids for idempotent writes, and readable case references."""

from __future__ import annotations

import secrets
import uuid
from typing import Final

_NAMESPACE: Final = uuid.UUID("5b1f3c1e-8d0a-4c57-9a43-6c1c2f1e7a10")
#: No 0/O, 1/I/L, 2/Z, 5/S, 8/B, 6/G: a reference read out on a bad phone line survives.
REFERENCE_ALPHABET: Final = "3479ACDEFHJKMNPQRTUVWXY"
REFERENCE_PREFIX: Final = "LB-"


def deterministic_id(*parts: str) -> str:
    """The same parts always give the same id: a redelivered event writes the same record."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def new_id() -> str:
    """A fresh random id."""
    return str(uuid.uuid4())


def new_case_reference(length: int = 5) -> str:
    """A short code a worker can read out on the phone, e.g. 'LB-7K3Q9'."""
    return REFERENCE_PREFIX + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(length))
