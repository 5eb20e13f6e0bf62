"""Passwords hashed with argon2id (argon2-cffi's defaults: RFC 9106's second choice)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hash and check passwords; a check against no hash still costs a full hash, so the
    time of a refusal does not tell whether the account exists."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash("no such account: compared so timing matches")

    def hash(self, password: str) -> str:
        """The stored form."""
        return self._hasher.hash(password)

    def check(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored` (None: compared with a dummy, then False)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
