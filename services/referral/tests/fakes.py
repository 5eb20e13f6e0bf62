"""In-memory stand-ins for referral's stores (unit tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from lintas_referral.domain.routing import Partner


@dataclass
class InMemoryPartnerDirectory:
    """Partners with the load counted on each partner, as `MongoPartnerDirectory` does:
    a claim counts a case once, only below the capacity; a release once.

    `stale` answers the routing decision with these loads instead (another instance's
    cache); `before_claim` runs before each claim (to race a write against it)."""

    partners: dict[str, Partner] = field(default_factory=dict)
    open_cases: dict[str, set[str]] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    before_claim: Callable[[str, str], Awaitable[None]] | None = None
    claims: int = 0
    releases: int = 0

    def add(self, *partners: Partner) -> InMemoryPartnerDirectory:
        for partner in partners:
            self.partners[partner.id] = partner
            self.open_cases.setdefault(partner.id, set())
        return self

    def load(self, partner_id: str) -> int:
        return len(self.open_cases.get(partner_id, ()))

    def _with_load(self, partner: Partner) -> Partner:
        count = self.stale.get(partner.id, self.load(partner.id))
        return replace(partner, open_referrals=count)

    async def in_countries(self, countries: Iterable[str]) -> Mapping[str, Sequence[Partner]]:
        return {
            country: sorted(
                (self._with_load(p) for p in self.partners.values() if p.country == country),
                key=lambda p: p.id,
            )
            for country in sorted(set(countries))
        }

    async def by_id(self, partner_id: str) -> Partner | None:
        partner = self.partners.get(partner_id)
        return None if partner is None else self._with_load(partner)

    async def claim(self, partner_id: str, case_id: str, capacity: int | None) -> bool:
        if self.before_claim is not None:
            await self.before_claim(partner_id, case_id)
        cases = self.open_cases.setdefault(partner_id, set())
        if case_id in cases:
            return True
        if capacity is not None and len(cases) >= capacity:
            return False
        cases.add(case_id)
        self.claims += 1
        return True

    async def release(self, partner_id: str, case_id: str) -> None:
        cases = self.open_cases.setdefault(partner_id, set())
        if case_id in cases:
            cases.discard(case_id)
            self.releases += 1
