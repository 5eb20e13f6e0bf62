"""In-memory stand-ins for referral's stores (unit tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from lintas_referral.domain.routing import Partner
from lintas_referral.partner_load import LoadClaim, StoredLoad


@dataclass
class InMemoryPartnerDirectory:
    """Partners with the load counted on each partner, as `MongoPartnerDirectory` does
    with the partner's count and one claim document per referral (`counted`: the claims
    by partner; the count is their number, the store's two steps being one here): one
    claim per open referral, counted once and only below the capacity (a hand-on
    whatever it), held by the runs that claimed it; a release once, with an owner only
    that owner's part (the referral stops counting when no owner is left). Also the
    reconciler's side (`PartnerLoads`), with the load version checked.

    `stale` answers the routing decision with these loads instead (another instance's
    cache); `before_claim` and `before_release` run before each claim and release (to
    race another change against them)."""

    partners: dict[str, Partner] = field(default_factory=dict)
    counted: dict[str, dict[str, LoadClaim]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    before_claim: Callable[[str, str], Awaitable[None]] | None = None
    before_release: Callable[[str, str], Awaitable[None]] | None = None
    claims: int = 0
    releases: int = 0

    def add(self, *partners: Partner) -> InMemoryPartnerDirectory:
        for partner in partners:
            self.partners[partner.id] = partner
            self.counted.setdefault(partner.id, {})
        return self

    @property
    def open_cases(self) -> dict[str, set[str]]:
        """The cases counted in each partner's load."""
        return {p: {c.case_id for c in claims.values()} for p, claims in self.counted.items()}

    def take(self, partner_id: str, case_id: str, referral_id: str | None = None) -> None:
        """Count a referral of another instance's (as if claimed there)."""
        rid = referral_id or f"referral-of-{case_id}"
        at = datetime(2026, 1, 1, tzinfo=UTC)
        self.counted.setdefault(partner_id, {})[rid] = LoadClaim(case_id, rid, "elsewhere", at)
        self._bump(partner_id)

    def load(self, partner_id: str) -> int:
        return len(self.counted.get(partner_id, ()))

    def _bump(self, partner_id: str) -> None:
        self.seq[partner_id] = self.seq.get(partner_id, 0) + 1

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

    async def claim(self, partner_id: str, claim: LoadClaim, capacity: int | None) -> bool:
        if self.before_claim is not None:
            await self.before_claim(partner_id, claim.case_id)
        counted = self.counted.setdefault(partner_id, {})
        held = counted.get(claim.referral_id)
        if held is not None:  # this owner holds it too
            others = tuple(o for o in held.owners if o != claim.owner)
            counted[claim.referral_id] = replace(claim, others=others)
            self._bump(partner_id)
            return True
        if capacity is not None and len(counted) >= capacity:
            return False
        counted[claim.referral_id] = claim
        self._bump(partner_id)
        self.claims += 1
        return True

    async def release(self, partner_id: str, referral_id: str, owner: str | None = None) -> None:
        if self.before_release is not None:
            await self.before_release(partner_id, referral_id)
        counted = self.counted.setdefault(partner_id, {})
        claim = counted.get(referral_id)
        if claim is None or (owner is not None and owner not in claim.owners):
            return
        if owner is not None and claim.owners != [owner]:
            rest = [o for o in claim.owners if o != owner]
            counted[referral_id] = replace(claim, owner=rest[0], others=tuple(rest[1:]))
            self._bump(partner_id)
            return
        del counted[referral_id]
        self._bump(partner_id)
        self.releases += 1

    # --- the reconciler's side -------------------------------------------------------------

    async def partner_ids(self) -> list[str]:
        return sorted(self.partners)

    async def loads(self, partner_ids: Sequence[str]) -> list[StoredLoad]:
        return [
            StoredLoad(p, self.seq.get(p), len(self.counted.get(p, {})), dict(self.counted[p]))
            for p in partner_ids
            if p in self.counted
        ]

    async def replace_load(self, load: StoredLoad, claims: Mapping[str, LoadClaim]) -> bool:
        if self.seq.get(load.partner_id) != load.seq:
            return False
        self.counted[load.partner_id] = dict(claims)
        self._bump(load.partner_id)
        return True
