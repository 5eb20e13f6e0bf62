"""API keys: generated once, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_api_key(prefix: str = "lk") -> str:
    """A new random API key (about 256 bits), e.g. 'lk_3f9a…'."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_api_key(api_key: str, pepper: str) -> str:
    """HMAC-SHA256 of the key under a server-side secret; what the store keeps."""
    return hmac.new(pepper.encode(), api_key.encode(), hashlib.sha256).hexdigest()
