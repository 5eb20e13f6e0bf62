"""Organisations that call the API, as intake knows them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lintas_shared.person_tokens import Role


class OrganisationKind(StrEnum):
    """What an organisation is allowed to do."""

    NGO = "ngo"
    LEGAL = "legal"
    ADMIN = "admin"


@dataclass(frozen=True)
class Organisation:
    """An NGO, a legal partner, or Lintas' own administrators."""

    id: str
    name: str
    kind: OrganisationKind
    country: str
    languages: tuple[str, ...] = ()
    claim_types: tuple[str, ...] = ()  # legal partners: what they handle (empty: all)
    capacity: int | None = None  # legal partners: open referrals they take at most

    def can_read_all_cases(self) -> bool:
        """Admins see every case (and every such read is audited)."""
        return self.kind is OrganisationKind.ADMIN


#: Roles that may read and submit cases and read the indicators, but not change a case.
READ_AND_SUBMIT_ONLY = frozenset({Role.PROGRAMME})


@dataclass(frozen=True)
class Caller:
    """Who is calling: an organisation by its API key (a system; no person), or a person
    of that organisation through the console's token."""

    organisation: Organisation
    person_id: str | None = None
    role: Role | None = None

    def may_change_cases(self) -> bool:
        """Correct, annotate, consent, close or erase: not programme staff, who read the
        cases, submit them (bulk import) and read the indicators."""
        return self.role not in READ_AND_SUBMIT_ONLY
