"""Organisations that call the API, as intake knows them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
