"""People who sign in to the console, and what each role may open."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from lintas_shared.person_tokens import Role

__all__ = ["Person", "Role", "normalise_email", "requires_second_factor"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: Lawyers and admins see the most sensitive data: a password alone is not enough.
SECOND_FACTOR_ROLES = frozenset({Role.LAWYER, Role.ADMIN})
#: Shortest password accepted (NIST SP 800-63B: at least 8; we ask for more).
MIN_PASSWORD_LENGTH = 12


class PeopleError(ValueError):
    """A request about people that cannot be done (the message is safe to show)."""


def normalise_email(email: str) -> str:
    """The one spelling an address is stored and looked up by."""
    value = email.strip().lower()
    if not _EMAIL.match(value) or len(value) > 254:
        raise PeopleError("not an email address")
    return value


@dataclass(frozen=True)
class Person:
    """A person of one organisation, with one role."""

    id: str
    organisation_id: str
    email: str
    role: Role
    display_name: str
    language: str = "id"
    password_hash: str | None = None
    totp_secret: str | None = None
    disabled: bool = False
    created_at: datetime | None = None

    @property
    def has_password(self) -> bool:
        """Whether the one-time link was used."""
        return self.password_hash is not None

    @property
    def has_second_factor(self) -> bool:
        """Whether a TOTP authenticator is enrolled."""
        return self.totp_secret is not None


def requires_second_factor(person: Person, *, enforced: bool) -> bool:
    """Whether this person must give a TOTP code after the password."""
    return person.has_second_factor or (enforced and person.role in SECOND_FACTOR_ROLES)


def check_new_password(password: str) -> None:
    """Refuse a password too short to resist guessing."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PeopleError("password too short")
