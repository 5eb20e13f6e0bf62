"""Deciding, for a newly submitted case, which legal partner is offered it.

The decision is a pure function of the case summary and the partners' current load, so
it is tested without any server and gives the same answer on redelivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from lintas_shared.events import CaseSubmitted
from lintas_shared.values import ConsentPurpose

#: Jurisdictions whose legal partners receive referrals today.
ROUTED_JURISDICTIONS = frozenset({"HK", "SG"})


@dataclass(frozen=True)
class Partner:
    """A legal partner that can be offered cases."""

    id: str
    name: str
    country: str
    claim_types: frozenset[str] = field(default_factory=frozenset)  # empty: all types
    capacity: int = 50
    open_referrals: int = 0

    def can_take(self, claim_types: set[str]) -> bool:
        """Has room and handles every claim type of the case."""
        handles = not self.claim_types or claim_types <= self.claim_types
        return handles and self.open_referrals < self.capacity


@dataclass(frozen=True)
class Offer:
    """Offer the case to this partner in this country."""

    partner: Partner
    country: str


@dataclass(frozen=True)
class Blocked:
    """No offer can be made; the NGO is told why and a human must act."""

    status: Literal["awaiting_consent", "unassigned"]
    reason: str


def decide(case: CaseSubmitted, partners: Sequence[Partner]) -> Offer | Blocked:
    """Pick the partner for a case, honouring the worker's consent."""
    country = case.employment.country
    if country not in ROUTED_JURISDICTIONS:
        return Blocked(
            "unassigned",
            f"no routing rule covers employment in {country} yet; a caseworker must pick a partner",
        )
    consent = case.consent
    if ConsentPurpose.LEGAL_REFERRAL not in consent.purposes:
        return Blocked("awaiting_consent", "consent does not cover the purpose legal_referral")
    if country not in consent.share_with_countries:
        return Blocked("awaiting_consent", f"consent does not cover sharing with {country}")
    claim_types = {claim.type.value for claim in case.claims}
    eligible = [p for p in partners if p.country == country and p.can_take(claim_types)]
    if not eligible:
        return Blocked(
            "unassigned",
            f"no legal partner in {country} has capacity for {', '.join(sorted(claim_types))}",
        )
    # Least loaded first; the id breaks ties so the choice is deterministic.
    chosen = min(eligible, key=lambda p: (p.open_referrals / p.capacity, p.id))
    return Offer(partner=chosen, country=country)
