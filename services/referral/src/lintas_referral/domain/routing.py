"""Choosing the legal partner for a jurisdiction's claims.

Pure: the partners and their current load are given. Least loaded first (open
referrals over capacity); the partner id breaks ties so the choice is deterministic and
a redelivered event makes the same offer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Partner:
    """A legal partner that can be offered referrals."""

    id: str
    name: str
    country: str
    claim_types: frozenset[str] = field(default_factory=frozenset)  # empty: all types
    capacity: int = 50
    open_referrals: int = 0
    languages: frozenset[str] = field(default_factory=frozenset)  # empty: any language

    def can_take(self, claim_types: Iterable[str], language: str | None = None) -> bool:
        """Has room, handles every claim type, and speaks the worker's language."""
        handles = not self.claim_types or set(claim_types) <= self.claim_types
        speaks = not self.languages or language is None or language in self.languages
        return handles and speaks and self.open_referrals < self.capacity

    @property
    def load(self) -> float:
        """Share of capacity in use."""
        return self.open_referrals / self.capacity if self.capacity else 1.0


def choose_partner(
    partners: Sequence[Partner],
    *,
    country: str,
    claim_types: Iterable[str],
    language: str | None,
    exclude: Iterable[str] = (),
) -> Partner | None:
    """The least-loaded eligible partner in `country`, or None when none is left."""
    excluded = set(exclude)
    types = set(claim_types)
    eligible = [
        p
        for p in partners
        if p.country == country and p.id not in excluded and p.can_take(types, language)
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda p: (p.load, p.id))
